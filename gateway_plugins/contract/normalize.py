"""Drop what the inventory normalizes away, before the strict body model sees the request.

Each endpoint's ``NORMALIZED`` rules are compiled once into a tree of path segments, so a request is walked only
along those paths (its messages or input items, never every value): answer-only fields a client echoes back as
history, client-side tags, and values equal to the API's default. Any top-level ``null`` is the default too.
"""

from __future__ import annotations

from typing import Any

from gateway_plugins.contract.inventory import NORMALIZED, Rule

_Tree = dict[str, "_Node"]


class _Node:
    __slots__ = ("children", "rule")

    def __init__(self) -> None:
        self.children: _Tree = {}
        self.rule: Rule | None = None


def _segments(pattern: str) -> list[str]:
    out: list[str] = []
    for part in pattern.split("."):
        name, _, rest = part.partition("[")
        out.append(name)
        out += ["[]"] * (rest.count("]") if rest else 0)
    return out


def _compile(rules: dict[str, Rule]) -> _Tree:
    root: _Tree = {}
    for pattern, rule in rules.items():
        tree = root
        segments = _segments(pattern)
        for i, seg in enumerate(segments):
            node = tree.setdefault(seg, _Node())
            if i == len(segments) - 1:
                node.rule = rule
            tree = node.children
    return root


_TREES = {endpoint: _compile(rules) for endpoint, rules in NORMALIZED.items()}


def _walk(value: Any, tree: _Tree) -> bool:
    changed = False
    if isinstance(value, list):
        node = tree.get("[]")
        if node is not None:
            for item in value:
                changed |= _walk(item, node.children)
        return changed
    if not isinstance(value, dict):
        return False
    for seg, node in tree.items():
        if seg[0] == "{":  # ``{role=assistant}``: the same object, when it is of that kind
            key, _, want = seg[1:-1].partition("=")
            if value.get(key) == want:
                changed |= _walk(value, node.children)
            continue
        if seg not in value:
            continue
        if node.rule is not None and node.rule.drops(value[seg]):
            del value[seg]
            changed = True
        elif node.children:
            changed |= _walk(value[seg], node.children)
    return changed


def normalize(endpoint: str, body: dict) -> bool:
    """Drop ``body``'s normalized fields in place; True when anything was dropped."""
    nulls = [k for k, v in body.items() if v is None]
    for key in nulls:
        del body[key]
    tree = _TREES.get(endpoint)
    return _walk(body, tree) or bool(nulls) if tree else bool(nulls)
