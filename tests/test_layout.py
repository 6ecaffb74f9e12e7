"""The import rules of STYLE.md: kernels stay pure, and `rnn --help` never loads numpy or Numba."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnncli"
KERNELS = sorted((PACKAGE / "engine" / "kernels").glob("*.py"))
ALLOWED = ("numpy", "numba", "math", "llvmlite")  # llvmlite: Numba's own IR builder, for intrinsics


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement anywhere in the file names (relative ones resolved)."""
    package = "rnncli.engine.kernels"
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
    return top in ALLOWED or module == "rnncli.engine.kernels" or module.startswith("rnncli.engine.kernels.")


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
    assert sorted(m for m in imported_modules(probe) if not allowed(m)) == ["rnncli", "rnncli.engine", "scipy"]


@pytest.mark.parametrize("module", ["rnncli", "rnncli.cli", "rnncli.config", "rnncli.errors"])
def test_light_modules_do_not_load_numpy_or_numba(module):
    code = (f"import sys, {module}; heavy = sorted({{'numpy', 'numba'}} & set(sys.modules)); "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- who may import whom

# Each part of the package and the parts it may import (besides itself). Imports point one way:
# cli -> tools -> lm, classify -> engine -> data; errors and config are leaves; only cli imports ui.
MAY_IMPORT = {
    "errors": set(),
    "config": {"errors"},
    "memory": {"errors"},
    "data": {"errors", "config", "memory"},
    "engine": {"errors", "config", "memory", "data"},
    "lm": {"errors", "config", "memory", "data", "engine"},
    "classify": {"errors", "config", "memory", "data", "engine"},
    "tools": {"errors", "config", "memory", "data", "engine", "lm", "classify"},
    "ui": {"errors", "config"},
    "export": {"errors", "config", "memory", "data", "engine", "lm", "tools"},
    "cli": {"errors", "config", "memory", "data", "engine", "lm", "classify", "tools", "export", "ui", "__init__"},
    "api": {"errors", "config", "memory", "data", "engine", "lm", "classify"},
    "__init__": {"errors", "config", "engine", "api"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def rnncli_imports(path: Path) -> set[str]:
    """The rnncli modules a file imports anywhere (lazy imports included), each resolved to the
    module itself: `from rnncli.engine import model` names rnncli.engine.model."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rnncli"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rnncli":
            for alias in node.names:
                sub = PACKAGE.parent / (node.module.replace(".", "/") + "/" + alias.name)
                is_module = sub.with_suffix(".py").exists() or (sub / "__init__.py").exists()
                found.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return found


def part_of(module: str) -> str:
    """rnncli.lm.train -> lm; rnncli.config -> config; rnncli -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "kernels" not in p.parts)
GRAPH = {module_name(p): rnncli_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_one_way(path):
    me = module_name(path)
    allowed_parts = MAY_IMPORT[part_of(me)] | {part_of(me)}
    bad = sorted(m for m in GRAPH[me] if part_of(m) not in allowed_parts and m != "rnncli")
    assert not bad, f"{me} imports {bad}, against the direction of the layers"


def test_nothing_imports_the_cli():
    importers = sorted(m for m, deps in GRAPH.items()
                       if part_of(m) not in ("cli", "__main__") and any(part_of(d) == "cli" for d in deps))
    assert not importers, importers


def cycle(graph: dict) -> list:
    """One import cycle among the modules of graph, or [] when there is none."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d not in graph:
                continue
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = "done"
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycles_lazy_imports_included():
    # a package imports its own modules (cli registers its commands): those edges are not cycles
    graph = {m: {d for d in deps if not (d.startswith(m + ".") or d == "rnncli")} for m, deps in GRAPH.items()}
    assert cycle(graph) == []


def test_the_checkers_catch_what_they_forbid():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []
    assert "lm" not in MAY_IMPORT["engine"] and "cli" not in MAY_IMPORT["tools"]
