"""Every module imports, the module-level import graph of masklab has no cycle, and no library module imports
the command line (masklab.cli is a thin layer on top of the library, never under it)."""

import ast
import importlib
import pkgutil
from pathlib import Path

import masklab

ROOT = Path(masklab.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The masklab module an imported name refers to: the longest known module prefix."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    """masklab modules imported by ``module``; with ``top_level_only``, only at import time (not in functions)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in child.names]
            else:
                visit(child)
                continue
            found.update(t for n in names if n.startswith("masklab") and (t := _target(n)) and t != module)

    visit(tree)
    return found


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(masklab.__path__, "masklab.")]
    assert set(names) | {"masklab"} == set(MODULES)
    for name in names:
        if name != "masklab.__main__":  # runs the command line when imported
            importlib.import_module(name)


def test_the_import_time_graph_has_no_cycle():
    graph = {m: _imports(m, p, top_level_only=True) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                walk(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])


def test_no_library_module_imports_the_command_line():
    offenders = {
        m: sorted(t for t in _imports(m, p, top_level_only=False) if t.startswith("masklab.cli"))
        for m, p in MODULES.items()
        if not m.startswith("masklab.cli") and m != "masklab.__main__"
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_argparse_lives_only_in_the_command_line():
    users = [m for m, p in MODULES.items() if not m.startswith("masklab.cli") and "argparse" in p.read_text()]
    assert users == []
