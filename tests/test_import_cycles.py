"""The module-level import graph of qmedgen has no cycles (a cycle makes import order matter and breaks lazily).

Imports that run when a module is imported (its body, class bodies, top-level ``if``/``try``) are module-level;
imports inside functions and ``if TYPE_CHECKING:`` blocks are collected separately and do not count for cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import qmedgen

SRC = Path(qmedgen.__file__).parent
PACKAGE = "qmedgen"


def _module_names() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> set[str]:
    """qmedgen modules an import statement loads (a ``from pkg import name`` loads pkg.name when it is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join([*pkg, base] if base else pkg)
        names = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            names.append(sub if sub in MODULES else base)
    return {n for n in names if n in MODULES and n.split(".")[0] == PACKAGE}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions or TYPE_CHECKING blocks) of one module."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    deferred: set[str] = set()

    def visit(nodes: list[ast.stmt], into: set[str]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                into |= _targets(node, module, is_package)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        deferred.update(_targets(sub, module, is_package))
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, deferred)
                visit(node.orelse, into)
            else:  # compound statements run their blocks at import time: class bodies, if / try / with / for
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, None) or [], into)
                for part in [*getattr(node, "handlers", []), *getattr(node, "cases", [])]:
                    visit(part.body, into)

    visit(ast.parse(path.read_text(), str(path)).body, top)
    top.discard(module)
    return top, deferred - top - {module}


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m)[0] for m in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


def test_the_parser_sees_module_level_and_function_level_imports():
    top, deferred = _imports("qmedgen.quantum.simulator")
    assert "qmedgen.quantum.compiled" in top and "qmedgen.quantum.engine" in top
    assert "qmedgen.evaluate.realdata" in _imports("qmedgen.evaluate.domain")[1]  # inside a function
    assert "qmedgen.quantum.compiled" not in deferred  # each import counts once, at its earliest level
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    assert len(MODULES) > 50


def test_module_level_imports_have_no_cycles():
    cycle = _find_cycle(_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_split_modules_do_not_import_each_other_at_any_level():
    """The shared cores that broke these cycles stay the only link (no lazy import back either)."""
    for a, b in [("qmedgen.quantum.noise", "qmedgen.quantum.simulator"),
                 ("qmedgen.evaluate.domain", "qmedgen.evaluate.extractors")]:
        top, deferred = _imports(a)
        assert b not in top | deferred, f"{a} imports {b}"
