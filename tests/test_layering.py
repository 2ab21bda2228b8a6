"""The operator's layering, read from its source (ast): what it may import, what handlers/ may hold, no cycles.

- From the data plane the operator imports only the policy contract (``gateway_plugins.policy``): request-path
  code, its metrics and LiteLLM stay out of the operator process.
- ``operator/handlers/`` is kopf wiring only: every function there is a kopf registration; the work lives in
  ``reconcile/`` and ``kube/`` where it can be called and tested without kopf.
- No import cycle among the operator's modules (imports inside functions count: a lazy import hides a cycle, it
  does not remove it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = ROOT / "operator"
PACKAGE = "gateway_operator"


def _module_name(path: Path) -> str:
    if path.is_relative_to(OPERATOR):
        parts = (PACKAGE, *path.relative_to(OPERATOR).with_suffix("").parts)
    else:
        parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(OPERATOR.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement, anywhere in the file; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, [alias.name for alias in node.names]))
    return found


def _operator_edges(path: Path) -> set[str]:
    """Operator modules ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    edges: set[str] = set()
    for module, names in _imports(path):
        if module != PACKAGE and not module.startswith(PACKAGE + "."):
            continue
        subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
        edges.update(subs or [module])
        if len(subs) < len(names):  # some names are attributes of ``module`` itself
            edges.add(module)
    edges.discard(_module_name(path))
    return {e for e in edges if e in MODULES}


def test_the_operator_imports_only_the_policy_contract_from_the_data_plane():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in MODULES.values()
        for module, names in _imports(path)
        if (module == "gateway_plugins" and any(n != "policy" for n in names))
        or (module.startswith("gateway_plugins.") and not (module + ".").startswith("gateway_plugins.policy."))
    ]
    assert offending == []


def test_the_policy_contract_imports_nothing_else_of_the_data_plane():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "gateway_plugins" / "policy").rglob("*.py"))
        for module, _ in _imports(path)
        if module.startswith("gateway_plugins") and not (module + ".").startswith("gateway_plugins.policy.")
    ]
    assert offending == []


HANDLERS = sorted((OPERATOR / "handlers").glob("*.py"))


def _is_kopf_registration(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    while isinstance(target, ast.Attribute):
        target = target.value
    return isinstance(target, ast.Name) and target.id == "kopf"


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.name)
def test_handlers_hold_only_kopf_registrations(path: Path):
    tree = ast.parse(path.read_text())
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    problems = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.decorator_list and all(_is_kopf_registration(d) for d in node.decorator_list):
                continue
            problems.append(f"{node.name}: not a kopf handler (move it to reconcile/ or kube/)")
        else:
            problems.append(f"line {node.lineno}: {type(node).__name__} (handlers/ holds kopf registrations only)")
    assert problems == []
    modules = {m for m, _ in _imports(path)}
    if path.name != "__init__.py":
        assert "kopf" in modules, "a handlers module that does not use kopf belongs elsewhere"


def test_handlers_package_registers_every_handler_module():
    registered = {n for m, names in _imports(OPERATOR / "handlers" / "__init__.py") for n in names}
    assert registered == {p.stem for p in HANDLERS if p.name != "__init__.py"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_operator_modules():
    graph = {name: _operator_edges(path) for name, path in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # The check sees real edges (a parser that found none would pass anything).
    assert "gateway_operator.reconcile.gateway" in graph["gateway_operator.handlers.gateway"]


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
