"""docs/design.md contract: the viewer knows a render function and a stats object, never the methods."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nerfkit.viewer

VIEWER_DIR = Path(nerfkit.viewer.__file__).resolve().parent
MODULES = sorted(f"nerfkit.viewer.{path.stem}" for path in VIEWER_DIR.glob("*.py") if path.stem != "__init__")

BLOCKER = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nerfkit.methods" or name.startswith("nerfkit.methods."):
            raise ImportError(f"the viewer imported {name}")
        return None

sys.meta_path.insert(0, Block())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.startswith("nerfkit.methods"))
assert not loaded, loaded
print("ok", len(sys.argv) - 1)
"""


def test_every_viewer_module_imports_with_methods_blocked():
    assert {"nerfkit.viewer.server", "nerfkit.viewer.keyframes", "nerfkit.viewer.panels"} <= set(MODULES)
    lazy = ["nerfkit.video.camera_path"]          # what the keyframe panel imports when used
    result = subprocess.run([sys.executable, "-c", BLOCKER, "nerfkit.viewer", *MODULES, *lazy],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(MODULES) + 1 + len(lazy)}"


def test_no_viewer_source_names_the_methods_or_the_glue():
    """Not even a lazy import inside a function: scan every import statement of viewer/."""
    forbidden = ("nerfkit.methods", "nerfkit.app", "nerfkit.runs")
    for path in VIEWER_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
