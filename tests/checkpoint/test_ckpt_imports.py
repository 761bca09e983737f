"""The checkpoint modules import each other without a cycle; ``io`` imports nothing from the package."""

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


def test_atomic_write_module_imports_nothing_from_the_package():
    tree = ast.parse((PACKAGE / "io.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not [n for n in imports if isinstance(n, ast.ImportFrom) and (n.level or "video_sparse" in n.module)]
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('io_alone', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "assert not [k for k in sys.modules if k.startswith('video_sparse')]; print(m.atomic_write.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGE / "io.py")], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "atomic_write", result.stderr[-2000:]
