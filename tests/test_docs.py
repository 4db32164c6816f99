"""docs/backprop.md stays true to the code: every function it links exists, every test it names exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backprop.md"


def _defined(path):
    """Names defined in a module: functions and classes, and ``Class.method`` for methods and properties."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def links(text):
    """``(names, target)`` of every Markdown link to a source file: the backticked names in its text."""
    for label, target in re.findall(r"\[([^\]]+)\]\((\.\./[^)]+\.py)\)", text):
        yield [n for n in re.findall(r"`([^`]+)`", label) if not n.endswith(".py")], target


def test_every_linked_function_exists_where_the_link_points():
    text = DOC.read_text()
    checked = 0
    for names, target in links(text):
        path = (DOC.parent / target).resolve()
        assert path.is_file(), target
        missing = [n for n in names if n not in _defined(path)]
        assert not missing, f"{missing} not in {target}"
        checked += len(names)
    assert checked >= 15


def test_every_test_the_document_names_exists():
    named = set(re.findall(r"`(test_\w+)`", DOC.read_text()))
    defined = {n for p in (ROOT / "tests").rglob("test_*.py") for n in _defined(p)}
    assert named and named <= defined, named - defined


def test_the_link_checker_sees_a_stale_link(tmp_path):
    assert list(links("see [`Sequential._backward`](../src/fcnet/model.py)")) == [(["Sequential._backward"],
                                                                                    "../src/fcnet/model.py")]
    assert "Sequential._backward" not in _defined(ROOT / "src" / "fcnet" / "model.py")
