"""The checkpoint modules import each other without a cycle; the write primitives import no other layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "video_sparse" / "checkpoint"


def _sibling_imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports (``from .x import ...``), inside functions too."""
    tree = ast.parse(path.read_text())
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_no_import_cycle_between_checkpoint_modules():
    graph = {p.stem: _sibling_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert "files" in graph["adapter_files"] and "io" in graph["onnx_vit"]  # the graph is really read
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, f"import cycle: {' -> '.join(stack + (module,))}"
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, stack + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())


def _package_imports(path: Path) -> set[str]:
    """Package modules ``path`` imports (relative or ``video_sparse...``), inside functions too."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("video_sparse")):
            found.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("video_sparse"))
    return found


def test_the_write_primitives_are_a_leaf():
    """``safe_files`` (atomic writes, link refusal) imports only ``errors`` from the package, and ``errors``
    nothing; ``checkpoint.io`` only ``safe_files``: every layer may use them without an import cycle."""
    root = PACKAGE.parent
    assert _package_imports(root / "errors.py") == set()
    assert _package_imports(root / "safe_files.py") == {".errors"}
    assert _package_imports(PACKAGE / "io.py") == {"..safe_files"}
    code = (
        "import sys; import video_sparse.safe_files as s, video_sparse.checkpoint.io as io; "
        "assert io.atomic_write is s.atomic_write; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
