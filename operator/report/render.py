"""Report outputs: rich tables for the terminal, CSV files, one self-contained HTML file with inline SVG charts."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path

from gateway_operator.report.build import BudgetRow, CacheRow, RegionRow, Report, UsageRow


def _range(report: Report) -> str:
    return f"{report.since.isoformat(timespec='seconds')} .. {report.until.isoformat(timespec='seconds')}"


def short_time(value: datetime | str) -> str:
    """Compact for an 80-column terminal, on the wall clock of the value's own zone (a Budget's period starts and
    ends at midnight in the Budget's timezone): ``2026-12-01`` at midnight, else ``2026-12-01 10:30``."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.strftime("%Y-%m-%d") if (when.hour, when.minute, when.second) == (0, 0, 0) else f"{when:%Y-%m-%d %H:%M}"


def terminal_table(title: str, columns: list[tuple[str, str]]):
    """A rich table that fits an 80-column terminal: no vertical rules, and nothing cut with an ellipsis.

    ``columns``: (header, kind): ``name`` folds onto more lines when it must (never cut), ``time`` and ``number``
    never wrap (a day is not readable cut or folded), ``text`` wraps at spaces."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, min_width=len(title))
    for header, kind in columns:
        if kind == "number":
            table.add_column(header, justify="right", no_wrap=True, overflow="fold")
        elif kind == "time":
            table.add_column(header, no_wrap=True, overflow="fold")
        else:
            table.add_column(header, overflow="fold")
    return table


def to_terminal(report: Report, console) -> None:
    since, until = report.since.astimezone(UTC), report.until.astimezone(UTC)
    span = f"{since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC"
    console.print(f"[bold]kubegate report[/bold] {span}: {report.records} audit records")
    console.print(f"integrity: {report.integrity}")
    usage = terminal_table(
        "Cost (USD), tokens and requests per tenant x model x day",
        [
            ("day", "time"),
            ("tenant", "name"),
            ("model", "name"),
            ("req", "number"),
            ("tokens in", "number"),
            ("tokens out", "number"),
            ("USD", "number"),
        ],
    )
    for r in report.usage:
        usage.add_row(
            r.day,
            r.tenant,
            r.model,
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.cost_usd:.6f}",
        )
    usage.add_row("total", "", "", str(report.total_requests), "", "", f"{report.total_cost:.6f}", style="bold")
    console.print(usage)
    if report.total_list > report.total_cost + 5e-7:
        # Volume discounts applied: the undiscounted price beside what was charged (per row in the CSV's list_usd).
        console.print(
            f"volume discounts: charged {report.total_cost:.6f} USD, list price {report.total_list:.6f} USD "
            f"(saved {report.total_list - report.total_cost:.6f})"
        )
    if report.budgets:
        # The namespace only when the budgets span several: `ai-gateway/team-eu-monthly` alone fills a third of 80.
        several = len({b.namespace for b in report.budgets}) > 1
        # Token columns only when some Budget limits tokens; % is of the nearer limit.
        tokens = any(b.limit_tokens is not None for b in report.budgets)
        columns = [("budget", "name"), ("tenant", "name"), ("period", "time"), ("spent", "number"), ("limit", "number")]
        columns += [("tokens", "number"), ("tok limit", "number")] if tokens else []
        budgets = terminal_table("Budget use against limits (USD, current period)", [*columns, ("%", "number")])
        for b in report.budgets:
            row = [
                f"{b.namespace}/{b.budget}" if several else b.budget,
                b.tenant,
                f"{short_time(b.period_start)} .. {short_time(b.period_end)}" + (" *" if b.partial else ""),
                f"{b.spent_usd:.6f}",
                "-" if b.limit_usd is None else f"{b.limit_usd:g}",
            ]
            row += [str(b.spent_tokens), "-" if b.limit_tokens is None else str(b.limit_tokens)] if tokens else []
            budgets.add_row(*row, f"{b.percent:.1f}")
        console.print(budgets)
        if any(b.partial for b in report.budgets):
            console.print("* the report range starts after the period: spend before it is not counted")
    for title, data in (("Refusals by reason", report.refusals), ("PII detections by entity type", report.pii)):
        table = terminal_table(title, [("what", "name"), ("count", "number")])
        for key, count in data.items():
            table.add_row(key, str(count))
        if not data:
            table.add_row("none", "0")
        console.print(table)
    regions = terminal_table(
        "Where requests were served",
        [
            ("tenant", "name"),
            ("region", "name"),
            ("requests", "number"),
            ("residency-restricted", "number"),
            ("kept in region", "number"),
        ],
    )
    for g in report.regions:
        regions.add_row(g.tenant, g.region, str(g.requests), str(g.restricted), str(g.in_region))
    console.print(regions)
    console.print(f"restricted requests served outside their allowed regions: {report.outside_region}")
    if report.cache:
        cache = terminal_table(
            "Response cache", [("tenant", "name"), ("hits", "number"), ("misses", "number"), ("saved USD", "number")]
        )
        for c in report.cache:
            cache.add_row(c.tenant, str(c.hits), str(c.misses), f"{c.saved_usd:.6f}")
        cache.add_row("total", "", "", f"{report.total_saved:.6f}", style="bold")
        console.print(cache)


def _write_rows(path: Path, rows: list, kind: type) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([f.name for f in fields(kind)])
        for row in rows:
            writer.writerow(list(asdict(row).values()))


def to_csv(report: Report, path: Path) -> list[Path]:
    """``path``: usage per tenant x model x day; siblings ``-budgets``, ``-refusals``, ``-pii``, ``-regions``, ``-cache``."""
    written = [path]
    _write_rows(path, report.usage, UsageRow)
    stem = path.with_suffix("")
    sib = lambda name: stem.with_name(f"{stem.name}-{name}.csv")  # noqa: E731
    _write_rows(sib("budgets"), report.budgets, BudgetRow)
    _write_rows(sib("regions"), report.regions, RegionRow)
    _write_rows(sib("cache"), report.cache, CacheRow)
    for name, data in (("refusals", report.refusals_by_tenant), ("pii", report.pii_by_tenant)):
        with sib(name).open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["tenant", "reason" if name == "refusals" else "entity", "count"])
            for (tenant, key), count in data.items():
                writer.writerow([tenant, key, count])
    written += [sib(n) for n in ("budgets", "regions", "refusals", "pii", "cache")]
    return written


# ---- HTML -------------------------------------------------------------------------------------------------------

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def _svg(fig) -> str:
    buf = io.StringIO()
    # No metadata block: no generator date (the same data gives the same file) and no RDF namespace URLs.
    fig.savefig(
        buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
    )
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML needs neither


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display, never a GUI backend
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text (searchable, selectable), not glyph paths
    return plt.subplots(figsize=(7.5, 3.6))


def chart_cost_over_time(report: Report) -> str | None:
    per = report.cost_by_tenant_day()
    if not per:
        return None
    import matplotlib.pyplot as plt

    days = sorted({d for series in per.values() for d in series})
    fig, ax = _figure()
    for i, (tenant, series) in enumerate(sorted(per.items())):
        ax.plot(days, [series.get(d, 0.0) for d in days], marker="o", label=tenant, color=COLORS[i % len(COLORS)])
    ax.set_title("Cost per day by tenant (USD)")
    ax.set_ylabel("USD")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    try:
        return _svg(fig)
    finally:
        plt.close(fig)


def _bar_chart(title: str, data: dict[str, float], xlabel: str, color: str) -> str | None:
    if not data:
        return None
    import matplotlib.pyplot as plt

    items = list(data.items())[:10][::-1]
    fig, ax = _figure()
    ax.barh([k for k, _ in items], [v for _, v in items], color=color)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    try:
        return _svg(fig)
    finally:
        plt.close(fig)


def charts(report: Report) -> dict[str, str | None]:
    return {
        "cost-over-time": chart_cost_over_time(report),
        "top-models": _bar_chart("Top models by cost (USD)", report.cost_by_model(), "USD", COLORS[0]),
        "refusals": _bar_chart("Refusals by reason", report.refusals, "requests", COLORS[3]),
        "pii": _bar_chart("PII detections by entity type", report.pii, "entities", COLORS[4]),
    }


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#555} .ok{color:#1a7f37;font-weight:600} .bad{color:#c0392b;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} td,th{border:1px solid #ddd;padding:.25rem .6rem}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:1rem} figure{margin:0} figure svg{width:100%;height:auto}
.empty{color:#777;font-style:italic;padding:2rem;border:1px dashed #ccc;text-align:center}
"""


def _table(headers: list[str], rows: list[list[object]], numeric_from: int) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{html.escape(str(c))}</td>' if i >= numeric_from else f"<td>{html.escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(headers)}" class="empty">none</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(report: Report, title: str = "kubegate report") -> str:
    """One file, no external resource (no script, font, stylesheet or image URL): opens offline as it is."""
    ok = report.integrity.startswith("OK")
    figures = []
    for chart_id, svg in charts(report).items():
        inner = svg if svg else '<div class="empty">no data in this range</div>'
        figures.append(f'<figure id="chart-{chart_id}" data-chart="{chart_id}">{inner}</figure>')
    usage = _table(
        ["day", "tenant", "model", "requests", "prompt tokens", "completion tokens", "cost USD"],
        [
            [r.day, r.tenant, r.model, r.requests, r.prompt_tokens, r.completion_tokens, f"{r.cost_usd:.6f}"]
            for r in report.usage
        ],
        3,
    )
    budgets = _table(
        ["budget", "tenant", "period", "spent USD", "limit USD", "tokens", "limit tokens", "% of limit"],
        [
            [
                f"{b.namespace}/{b.budget}",
                b.tenant,
                f"{b.period_start} .. {b.period_end}" + (" (range starts after the period)" if b.partial else ""),
                f"{b.spent_usd:.6f}",
                "-" if b.limit_usd is None else f"{b.limit_usd:g}",
                b.spent_tokens,
                "-" if b.limit_tokens is None else b.limit_tokens,
                f"{b.percent:.1f}",
            ]
            for b in report.budgets
        ],
        3,
    )
    refusals = _table(
        ["tenant", "reason", "requests"], [[t, r, c] for (t, r), c in report.refusals_by_tenant.items()], 2
    )
    pii = _table(["tenant", "entity type", "detections"], [[t, e, c] for (t, e), c in report.pii_by_tenant.items()], 2)
    regions = _table(
        ["tenant", "region", "requests", "residency-restricted", "kept in region"],
        [[g.tenant, g.region, g.requests, g.restricted, g.in_region] for g in report.regions],
        2,
    )
    cache = _table(
        ["tenant", "cache hits", "misses", "saved USD"],
        [[c.tenant, c.hits, c.misses, f"{c.saved_usd:.6f}"] for c in report.cache],
        1,
    )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">Range {html.escape(_range(report))} &middot; {report.records} audit records &middot;
{report.total_requests} requests served &middot; {report.total_cost:.6f} USD &middot; generated {generated}</p>
<p id="integrity">Audit integrity: <span class="{"ok" if ok else "bad"}">{html.escape(report.integrity)}</span></p>
<h2>Charts</h2>
<div class="charts">{"".join(figures)}</div>
<h2>Cost, tokens and requests per tenant &times; model &times; day</h2>{usage}
<h2>Budget use against limits</h2>{budgets}
<h2>Refusals by reason</h2>{refusals}
<h2>PII detections by entity type</h2>{pii}
<h2>Where requests were served</h2>{regions}
<p id="residency">Residency-restricted requests served outside their allowed regions: <b>{report.outside_region}</b></p>
<h2>Response cache</h2>{cache}
<p id="cache-saved">Saved by cache hits: <b>{report.total_saved:.6f} USD</b></p>
</body></html>
"""
