"""Generate the field inventory section of docs/contract.md (``python -m tests.contract.gen_contract_inventory``).

From the two sources of truth: the body models (forwarded fields) and ``gateway_plugins/contract/inventory.py``
(normalized and refused ones). ``test_inventory.py`` fails when the committed section differs from this output.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway_plugins.contract import inventory
from gateway_plugins.contract.inventory import ABSENT
from gateway_plugins.contract.routes import BODIES
from gateway_plugins.contract.validate import API_NAMES
from tests.contract.field_paths import FREE_FORM, field_paths

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
BEGIN, END = "<!-- inventory:begin (generated) -->", "<!-- inventory:end -->"
_TAG_LEAF = re.compile(r"(^|\.)(type|role)$")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _when(rule: inventory.Rule) -> str:
    if rule.defaults is ABSENT:
        return "always"
    values = ", ".join("`null`" if v is None else f"`{_json(v)}`" for v in rule.defaults)  # type: ignore[union-attr]
    return f"when {values}"


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def _forwarded(endpoint: str) -> list[str]:
    paths = field_paths(BODIES[endpoint])
    shown = []
    for path in sorted(paths):
        if path.endswith(FREE_FORM) or _TAG_LEAF.search(path) or path.endswith("}"):
            continue
        free = path + FREE_FORM in paths
        shown.append(f"`{path}`" + (" (free-form)" if free else ""))
    return shown


def render_section() -> str:
    out = [BEGIN, "", "## Field inventory", ""]
    out.append(
        "Generated from the body models and `gateway_plugins/contract/inventory.py`; "
        "`tests/contract/test_inventory.py` checks that every request field of the pinned `openai` and "
        "`anthropic` SDKs has one of these fates. Paths: `[]` is a list item, `{type=x}` an object of that type "
        "(`{type=!a|b}`: of any other type), `*` any characters."
    )
    for endpoint in BODIES:
        out += ["", f"### {API_NAMES[endpoint]}", "", "**Forwarded** (every string PII-analysed unless structural):"]
        out += ["", ", ".join(_forwarded(endpoint)), ""]
        normalized = inventory.NORMALIZED.get(endpoint, {})
        if normalized:
            out += ["**Normalized** (dropped before validation; any top-level `null` too):", ""]
            out += ["| field | dropped | why |", "| --- | --- | --- |"]
            out += [f"| `{_cell(p)}` | {_when(r)} | {_cell(r.why)} |" for p, r in sorted(normalized.items())]
            out.append("")
        policy = inventory.POLICY.get(endpoint, {})
        if policy:
            out += ["**Policy-controlled** (forwarded for Tenants that enable them, else dropped):", ""]
            out += ["| field | why | to enable |", "| --- | --- | --- |"]
            out += [f"| `{_cell(p)}` | {_cell(r.why)} | {_cell(r.fix)} |" for p, r in sorted(policy.items())]
            out.append("")
        refused = inventory.REFUSED.get(endpoint, {})
        if refused:
            out += ["**Refused** (`400 unsupported_field`, the message says why and what to do):", ""]
            out += ["| field | why | instead |", "| --- | --- | --- |"]
            out += [f"| `{_cell(p)}` | {_cell(r.why)} | {_cell(r.fix)} |" for p, r in sorted(refused.items())]
            out.append("")
    out += ["Anything else is refused as not part of the API this gateway accepts.", "", END]
    return "\n".join(out)


def render(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + render_section() + tail


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
