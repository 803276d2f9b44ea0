"""Import a mesh into Blender (the ``bpy`` module) and print what Blender made of it, as JSON.

Run in its own process (Blender's libraries stay out of the test process):

    python tests/export/blender_check.py mesh.obj    # or mesh.ply

.obj files are imported Z-up (``forward_axis='Y', up_axis='Z'``, the axes nerfkit writes, docs/design.md)
and .ply files with Blender's defaults (already Z-up). Prints one JSON object: vertex and face
counts, the world-space bounding box, the first colour attribute's distinct sRGB colours, and the
image textures of the materials (size, pixel spread), on a line starting ``blender-report: ``.
"""

from __future__ import annotations

import json
import sys

REPORT_PREFIX = "blender-report: "
"""The report's line starts with this (Blender prints its own lines to stdout too)."""


def main(path: str) -> dict:
    import bpy
    import numpy as np

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.lower().endswith(".ply"):
        bpy.ops.wm.ply_import(filepath=path)
    else:
        bpy.ops.wm.obj_import(filepath=path, forward_axis="Y", up_axis="Z")
    meshes = [obj for obj in bpy.context.scene.objects if obj.type == "MESH"]
    if len(meshes) != 1:
        return {"error": f"expected one mesh object, Blender made {len(meshes)}"}
    obj = meshes[0]
    mesh = obj.data
    corners = [obj.matrix_world @ vertex.co for vertex in mesh.vertices]
    report = {
        "blender": bpy.app.version_string,
        "vertices": len(mesh.vertices),
        "faces": len(mesh.polygons),
        "bbox_min": [min(c[axis] for c in corners) for axis in range(3)],
        "bbox_max": [max(c[axis] for c in corners) for axis in range(3)],
        "color_attributes": [attr.name for attr in mesh.color_attributes],
        "colors": [],
        "textures": [],
    }
    if mesh.color_attributes:
        data = mesh.color_attributes[0].data
        report["colors"] = [[round(255 * value) for value in data[i].color_srgb[:3]]
                            for i in range(len(data))]
    for material in mesh.materials:
        if material is None or material.node_tree is None:
            continue
        for node in material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                image = node.image
                pixels = np.zeros(len(image.pixels), np.float32)
                image.pixels.foreach_get(pixels)
                rgb = pixels.reshape(-1, image.channels)[:, :3]
                report["textures"].append({"file": image.filepath, "size": list(image.size),
                                           "has_data": bool(image.has_data), "std": float(rgb.std()),
                                           "distinct": int(len(np.unique(rgb.round(3), axis=0)))})
    return report


if __name__ == "__main__":
    print(REPORT_PREFIX + json.dumps(main(sys.argv[1])))
