"""The README's pictures, made from measured results (issue 20).

    python docs/make_pictures.py plot                    # docs/psnr_vs_time.png from BENCHMARKS.md
    python docs/make_pictures.py mesh MESH.ply           # docs/mesh.png: the mesh rendered by Blender (bpy)
    python docs/make_pictures.py -o docs/skull.png mesh MESH.ply --scene SCENE   # framed as SCENE's photos

``plot`` reads every BENCHMARKS.md table that has a ``train s`` and a ``test PSNR`` column under a
``### object-a`` heading and draws test PSNR against training seconds, one line per method (the
``##`` section it is in). ``mesh`` imports a vertex-coloured .ply (``nerfkit export mesh``) into an
empty Blender scene, frames it with a camera from the front-above and renders it with Eevee's
workbench engine (vertex colours, soft studio light) at 960x720.

The viewer screenshot comes from the browser test (``tests/viewer/test_browser.py``):
``NERFKIT_SAVE_SCREENSHOT=1 NERFKIT_SCREENSHOT_RUN=RUN NERFKIT_SCREENSHOT_RESOLUTION=720 pytest
tests/viewer/test_browser.py -k follows_the_camera`` rewrites docs/viewer.png.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BENCHMARKS = DOCS.parent / "BENCHMARKS.md"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def object_a_curves(markdown: str) -> dict[str, list[tuple[float, float]]]:
    """``{section: [(train seconds, test PSNR dB), ...]}`` from the tables under ``### object-a``."""
    curves: dict[str, list[tuple[float, float]]] = {}
    section, subsection, header = "", "", None
    for line in markdown.splitlines():
        if line.startswith("## "):
            section, subsection, header = line[3:].strip(), "", None
        elif line.startswith("### "):
            subsection, header = line[4:].strip(), None
        elif line.startswith("|") and "object-a" in subsection:
            cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = [cell.lower() for cell in cells]
            elif not set("".join(cells)) <= set("-: "):
                if "train s" in header and "test psnr" in header:
                    try:
                        seconds = float(cells[header.index("train s")].replace(",", ""))
                        value = float(cells[header.index("test psnr")])
                    except (ValueError, IndexError):
                        continue
                    name = re.sub(r"\s*\(issue \d+\)", "", section)
                    if header[0] not in ("train s", "steps"):     # a table of several runs: one line each
                        name = f"{header[0]} {cells[0]}"
                    date = DATE.search(subsection) or DATE.search(section)
                    name = f"{name}, {date.group(0)}" if date else name
                    curves.setdefault(name, []).append((seconds, value))
        else:
            header = None if not line.startswith("|") else header
    return curves


def plot(output: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = object_a_curves(BENCHMARKS.read_text())
    if not curves:
        raise SystemExit(f"no object-a table with 'train s' and 'test PSNR' columns in {BENCHMARKS}")
    figure = Figure(figsize=(6.4, 3.8), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for name, points in curves.items():
        points.sort()
        axes.plot([s for s, _ in points], [p for _, p in points], "o-", label=name)
    axes.set(xlabel="training time (s)", ylabel="test PSNR (dB)",
             title="object-a (200 px, 25 test views), from BENCHMARKS.md")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(output)
    return output


def scene_view(scene: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The direction (world units, from the object towards its cameras) and the up vector (the
    cameras' mean image-up) of a scene's cameras, to frame a mesh as the photos show it."""
    from nerfkit.data import load_scene
    from nerfkit.data.similarity import invert_similarity

    loaded = load_scene(scene, downscale=8)
    to_world = invert_similarity(loaded.world_to_scene.double())
    c2w = to_world @ loaded.cameras.c2w.double()                     # (N, 4, 4), world units
    direction = c2w[:, :3, 3].mean(0) - (to_world[:3, :3] @ loaded.aabb.double().mean(0) + to_world[:3, 3])
    up = -c2w[:, :3, 1].mean(0)                                      # OpenCV: image y points down
    return tuple(direction.tolist()), tuple(up.tolist())


def render_mesh(mesh: Path, output: Path, size: tuple[int, int] = (960, 720),
                view: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None) -> Path:
    """Render ``mesh`` (.ply with vertex colours) with Blender's bpy into ``output`` (PNG), from the
    front-above (Z up) or from ``view`` (direction towards the camera, up vector; see :func:`scene_view`)."""
    import bpy
    from mathutils import Matrix, Vector

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.ply_import(filepath=str(mesh))
    obj = bpy.context.selected_objects[0]
    corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
    centre = sum(corners, Vector()) / 8
    radius = max((corner - centre).length for corner in corners)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    camera.data.lens = 50
    direction, up = Vector((0.0, -1.0, 0.6)), Vector((0.0, 0.0, 1.0))   # front, from above (Z up)
    if view is not None:
        direction, up = Vector(view[0]), Vector(view[1])
    direction = direction.normalized()
    camera.location = centre + direction * radius * 3.2
    forward = (centre - camera.location).normalized()
    right = forward.cross(up).normalized()
    true_up = right.cross(forward)
    rotation = Matrix((right, true_up, -forward)).transposed()      # camera looks down its -Z, Y up
    camera.rotation_euler = rotation.to_euler()
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "VERTEX"
    shading.show_cavity = True
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"                 # white stays white
    scene.world = bpy.data.worlds.new("world")
    scene.world.color = (1.0, 1.0, 1.0)
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(output)
    bpy.ops.render.render(write_still=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    kinds.add_parser("plot", help="docs/psnr_vs_time.png from BENCHMARKS.md")
    mesh = kinds.add_parser("mesh", help="docs/mesh.png: a mesh rendered by Blender")
    mesh.add_argument("mesh", type=Path)
    mesh.add_argument("--scene", type=Path, default=None, help="frame the mesh as this scene's cameras see it")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    if args.kind == "plot":
        print(plot(args.output or DOCS / "psnr_vs_time.png"))
    else:
        view = scene_view(args.scene) if args.scene is not None else None
        print(render_mesh(args.mesh, (args.output or DOCS / "mesh.png").resolve(), view=view))


if __name__ == "__main__":
    main()
