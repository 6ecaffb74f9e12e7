"""The import rules of STYLE.md: kernels stay pure, and `rnn --help` never loads numpy or Numba."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnncli"
KERNELS = sorted((PACKAGE / "kernels").glob("*.py"))
ALLOWED = ("numpy", "numba", "math", "llvmlite")  # llvmlite: Numba's own IR builder, for intrinsics


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement anywhere in the file names (relative ones resolved)."""
    package = "rnncli.kernels"
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            else:
                names.append(node.module)
    return names


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    return top in ALLOWED or module == "rnncli.kernels" or module.startswith("rnncli.kernels.")


def test_kernel_modules_exist():
    expected = {"rnn.py", "lstm.py", "gru.py", "linear.py", "activations.py", "optim.py"}
    assert expected <= {p.name for p in KERNELS}


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_kernels_import_only_numpy_numba_llvmlite_math_and_siblings(path):
    bad = [m for m in imported_modules(path) if not allowed(m)]
    assert not bad, f"{path.name} imports {bad}"


def test_import_rule_checker_rejects_outsiders(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy as np\nfrom numba import njit\nfrom . import rnn\n"
                     "def f():\n    import scipy\nfrom rnncli import model\nfrom .. import config\n")
    assert sorted(m for m in imported_modules(probe) if not allowed(m)) == ["rnncli", "rnncli", "scipy"]


@pytest.mark.parametrize("module", ["rnncli", "rnncli.cli", "rnncli.config", "rnncli.errors"])
def test_light_modules_do_not_load_numpy_or_numba(module):
    code = (f"import sys, {module}; heavy = sorted({{'numpy', 'numba'}} & set(sys.modules)); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
