"""What each real client sends by default: runs every flow straight against the echo upstream (no gateway), through
the recording forwarder, and writes OUT/<client>.jsonl (every request: flow, method, path with query, header names,
JSON body, status) and OUT/SUMMARY.md (per client and endpoint, every field path sent, and query parameters).

    .venv/bin/python tests/clients/capture.py [OUT]     # default /tmp/kg-capture
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Keys whose (string) value is shown in a path: they select what the rest of the object means.
SHOWN = frozenset(
    {"type", "role", "tool_choice", "encoding_format", "detail", "effort", "summary", "truncation", "include"}
)
# Keys whose value is a JSON Schema (free-form): a leaf.
SCHEMAS = frozenset({"input_schema", "parameters", "schema"})


def field_paths(value: Any, prefix: str = "") -> set[str]:
    """``messages[].content[].type=text``-style paths of a JSON value; booleans, null, empty lists/objects and
    the values of ``SHOWN`` keys are written out, JSON Schemas are leaves."""
    if isinstance(value, dict):
        if not value:
            return {f"{prefix}={{}}"} if prefix else set()
        out: set[str] = set()
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else k
            if k in SHOWN and isinstance(v, str):
                out.add(f"{path}={v}")
            elif k in SCHEMAS and isinstance(v, dict):
                out.add(path)
            else:
                out |= field_paths(v, path)
        return out
    if isinstance(value, list):
        if not value:
            return {f"{prefix}=[]"}
        if prefix.rsplit(".", 1)[-1] in SHOWN:
            return {f"{prefix}[]={v}" if isinstance(v, str) else f"{prefix}[]" for v in value}
        return set().union(*(field_paths(v, prefix + "[]") for v in value))
    if isinstance(value, bool) or value is None:
        return {f"{prefix}={json.dumps(value)}"}
    return {prefix}


def client_of(script: str, flow: str) -> str:
    return flow if script == "cli" else script.removesuffix("_flow")


def summary(records: dict[str, list[dict]]) -> str:
    lines = ["# What real clients send by default", "", "Captured by `tests/clients/capture.py` against the echo",
             "upstream directly (no gateway). Per client and endpoint: query parameters, header names, and every",
             "body field path (`[]` a list item; `=value` for booleans, null, empty values and discriminators).",
             ""]  # fmt: skip
    for client, recs in records.items():
        lines += [f"## {client}", ""]
        failed = [r for r in recs if r.get("flow_result") != "ok"]
        for flow in sorted({r["flow"] for r in failed}):
            err = next(r["flow_error"] for r in failed if r["flow"] == flow)
            lines.append(f"- flow `{flow}` FAILED against the bare echo: `{err}`")
        by_endpoint: dict[str, list[dict]] = defaultdict(list)
        for r in recs:
            if r["method"] == "FLOW":
                continue
            by_endpoint[f"{r['method']} {urlsplit(r['path']).path}"].append(r)
        for endpoint, reqs in sorted(by_endpoint.items()):
            flows_seen = sorted({r["flow"] for r in reqs})
            statuses = sorted({str(r.get("status")) for r in reqs})
            lines += ["", f"### {endpoint}", "", f"{len(reqs)} request(s), flows {', '.join(flows_seen)}; "
                      f"statuses {', '.join(statuses)}"]  # fmt: skip
            query = sorted({f"{k}={v}" for r in reqs for k, v in parse_qsl(urlsplit(r["path"]).query, True)})
            if query:
                lines.append(f"- query: {', '.join(f'`{q}`' for q in query)}")
            headers = sorted({h for r in reqs for h in r["headers"]})
            lines.append(f"- headers: {', '.join(headers)}")
            paths = sorted(set().union(*(field_paths(r["body"]) for r in reqs if r["body"] is not None)))
            lines += ["- body fields:", *(f"  - `{p}`" for p in paths)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    # The repo goes after the stdlib on the path: its top-level operator/ must not shadow the stdlib's operator.
    sys.path.append(str(Path(__file__).resolve().parents[2]))
    from tests.clients.catalog import RecorderServer, error_line, flows, run_flow
    from tests.harness.echo import EchoServer

    out = Path(argv[0] if argv else "/tmp/kg-capture")
    out.mkdir(parents=True, exist_ok=True)
    echo = EchoServer().start()
    recorder = RecorderServer(f"http://127.0.0.1:{echo.port}").start()
    records: dict[str, list[dict]] = defaultdict(list)
    try:
        for script, flow in flows():
            recorder.clear()
            done = run_flow(script, flow, recorder.base_url, "sk-capture-0123456789")
            ok = done.returncode == 0
            error = "" if ok else error_line(done.stderr)
            print(f"{script}.{flow}: {'ok' if ok else 'FAILED ' + error}", file=sys.stderr)
            reqs = recorder.requests()
            for r in reqs or [{"method": "FLOW", "path": "", "headers": [], "body": None}]:
                r.update(flow=flow, flow_result="ok" if ok else "failed", flow_error=error)
                records[client_of(script, flow)].append(r)
    finally:
        recorder.stop()
        echo.stop()
    for client, recs in records.items():
        (out / f"{client}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (out / "SUMMARY.md").write_text(summary(records))
    print(f"wrote {out}/SUMMARY.md", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
