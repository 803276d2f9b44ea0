"""The package's layers, written down: every module imports only from its own layer or below, and
no module imports itself back through others (docs/architecture.md draws the same picture).

Imports are read from the source (every ``import`` and ``from ... import``, also the lazy ones
inside functions and those under ``TYPE_CHECKING``), so a violation fails here before it is ever run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nerfkit

PACKAGE = Path(nerfkit.__file__).resolve().parent

LAYERS: list[tuple[str, ...]] = [
    # lowest first: the foundation, then the library, then run handling, the app and the commands
    ("nerfkit.core",),                  # errors, atomic files, settings machinery
    ("nerfkit.image",),                 # image metrics and visualisation
    ("nerfkit.ops",),                   # native kernels and their PyTorch twins
    ("nerfkit.data",),                  # scenes, cameras and rays, batches
    ("nerfkit.render",),                # samplers, estimators, losses, splat rasterizer, SH
    ("nerfkit.fields",),                # encodings and networks
    ("nerfkit.methods",),               # the method contract, registry and methods
    ("nerfkit.export", "nerfkit.video"),  # meshes, splats, point clouds; camera paths, videos
    ("nerfkit.ingest",),                # photos / video -> COLMAP scene, pose evaluation
    ("nerfkit.runs",),                  # run folder, config, trainer, checkpoints, evaluation
    ("nerfkit.viewer",),                # the web viewer (knows no method)
    ("nerfkit.app",),                   # serving a method in the viewer
    ("nerfkit.cli", "nerfkit.__main__"),  # one module per command
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in path.parts}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The nerfkit modules ``name`` imports (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("nerfkit"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("nerfkit"):
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {module for module in found if module in known}


def layer_of(name: str) -> int:
    best, index = -1, None
    for position, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), position
    if name == "nerfkit":
        return 0
    assert index is not None, f"module {name} is in no layer: add it to LAYERS in {__file__}"
    return index


def edges() -> dict[str, set[str]]:
    """Module -> modules it needs loaded: its imports, and their parent packages (a package's
    ``__init__`` runs before its submodule) other than the importer's own ancestors."""
    modules = all_modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        needs = set()
        for target in imported_modules(name, path, known):
            needs.add(target)
            parts = target.split(".")
            needs.update(parent for parent in (".".join(parts[:i]) for i in range(1, len(parts)))
                         if parent in known and parent not in ancestors and parent != name)
        needs.discard(name)
        graph[name] = needs
    return graph


def test_every_module_is_in_a_layer_and_imports_downward_only():
    graph = edges()
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name, targets in sorted(graph.items()) for target in sorted(targets)
              if layer_of(target) > layer_of(name)]
    assert upward == [], "\n".join(upward)


def test_no_import_cycles():
    graph = edges()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:                       # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == [], cycles


def test_the_checker_sees_a_violation():
    """Not vacuous: a lower layer importing a higher one is caught by ``layer_of``."""
    assert layer_of("nerfkit.data.sampler") < layer_of("nerfkit.methods.base")
    assert layer_of("nerfkit.cli.train") == len(LAYERS) - 1
    assert "nerfkit.data.cameras" in edges()["nerfkit.data.scene"]


def test_no_file_is_over_600_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in all_modules().items()}
    assert {name: lines for name, lines in long.items() if lines > 600} == {}
