"""The module structure: an acyclic import graph, no private names across modules, a light core."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fcnet

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fcnet"


def _name(path):
    """``engines.numba`` for ``fcnet/engines/numba.py``; ``engines`` for ``fcnet/engines/__init__.py``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_name(path): (path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name, path, tree, modules):
    """``(module, names)`` of every relative import in ``tree``, at any depth (lazy imports count), as package
    modules: ``from ..layers import Dense`` in ``engines/base.py`` is ``("layers", ["Dense"])``, and ``from . import
    base`` there is ``("engines.base", [])``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            where = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            base = ".".join([*where, *(node.module.split(".") if node.module else [])])
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}".lstrip(".") for n in names if f"{base}.{n}".lstrip(".") in modules]
            if submodules and len(submodules) == len(names):  # from . import a, b: modules
                found += [(m, []) for m in submodules]
            else:
                found.append((base, names))
    return found


def import_graph():
    modules = _modules()
    return {name: {m for m, _ in _imports(name, path, tree, modules) if m in modules and m != name}
            for name, (path, tree) in modules.items()}


def find_cycle(graph):
    """One cycle of ``graph`` as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert {"model", "training", "engines", "engines.base", "engines.numba", "engines.cuda", "run", "cli",
            "commands"} <= set(graph)
    assert "engines.base" in graph["engines.numba"] and "layers" in graph["engines.base"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_private_name_is_imported_or_used_across_modules():
    modules = _modules()
    offences = []
    for name, (path, tree) in modules.items():
        imported = set()  # local names bound to a module of this package
        for module, names in _imports(name, path, tree, modules):
            offences += [f"{name}: from .{module} import {n}" for n in names
                         if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                imported.update(a.asname or a.name for a in node.names
                                if any(m == a.name or m.endswith("." + a.name) for m in modules))
        for node in ast.walk(tree):  # module._private, for a module of this package
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert not offences, offences


def test_no_module_is_over_450_lines():
    """One module per concept, each readable in one sitting (the CUDA kernels, a .cu file, are not counted)."""
    long = {name: n for name, (path, _) in _modules().items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long, long


def test_the_core_imports_numpy_only():
    code = ("import sys, fcnet; heavy = {'numba', 'torch', 'matplotlib', 'distributed', 'fastapi', 'PIL', 'tqdm'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_the_heavier_modules_load_on_first_use():
    code = ("import sys, fcnet; before = 'fcnet.plots' in sys.modules; fcnet.plots.learning_curves;"
            "print(before, 'fcnet.plots' in sys.modules, fcnet.sklearn.MLPClassifier.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "MLPClassifier"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fcnet.nope  # noqa: B018
