"""The house plan: the pipeline's stages are where the README says, and modules do not import
each other in circles."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "staticgrad"
STAGES = ["tensor.py", "graph.py", "shapes.py", "dtypes.py", "ops", "autodiff.py", "rewrite.py",
          "schedule.py", "backends/reference.py", "backends/numba/render.py",
          "backends/numba/cache.py", "backends/numba/runtime.py", "backends/numba/mathlib.py",
          "backends/numba/blas.py", "backends/numba/loops.py", "function.py", "export.py",
          "inspect/listing.py", "inspect/dot.py", "inspect/explain.py", "check/anomaly.py",
          "check/gradcheck.py"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_at_load(path: Path) -> set:
    """Modules of the package that ``path`` imports when it is loaded (not inside functions,
    where an import runs on a call)."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("staticgrad"):
                found.add(target)
                for alias in node.names:   # `from . import shapes`: a module, not a name
                    where = PACKAGE.parent / target.replace(".", "/") / alias.name
                    if where.with_suffix(".py").exists() or where.is_dir():
                        found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("staticgrad")}
    return found


def test_the_stages_are_where_the_readme_says():
    missing = [s for s in STAGES if not (PACKAGE / s).exists()]
    assert not missing


def test_no_module_imports_itself_in_a_circle():
    """Edges are load-time imports (importing ``a.b`` loads ``a`` first); a package importing
    its own submodules to assemble itself (``ops/__init__``) is the one allowed back edge."""
    modules = {module_name(p): imports_at_load(p) for p in PACKAGE.rglob("*.py")}
    g = nx.DiGraph()
    for name, targets in modules.items():
        for target in targets:
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                parent = ".".join(parts[:k])
                if parent in modules and parent != name and not parent.startswith(name + "."):
                    g.add_edge(name, parent)
    circles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert circles == []


def test_modules_stay_small():
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 500}
    assert not big


def test_the_scheduler_and_the_loop_backend_name_no_op():
    """What an op needs from them lives in its OpDef (index map, accumulator, emitter...)."""
    from staticgrad.ops import REGISTRY

    places = [PACKAGE / "schedule.py"] + [PACKAGE / "backends" / "numba" / f"{m}.py"
                                         for m in ("loops", "render", "runtime", "cache")]
    for path in places:
        strings = {n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not strings & set(REGISTRY), (path.name, strings & set(REGISTRY))
