"""``kubegate report`` and ``kubegate usage`` tables in an 80-column terminal: nothing cut with an ellipsis, no line
wider than the terminal, days and amounts whole. Pure: records in, rich output captured."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway_operator.report.build import build_report
from gateway_operator.report.render import short_time, to_terminal
from gateway_operator.report.usage import UsageLine, time_left
from gateway_operator.report.usage import to_terminal as usage_to_terminal
from rich.console import Console

from gateway_plugins.policy.schema import Budget


def _console() -> Console:
    return Console(width=80, record=True, color_system=None, force_terminal=False)


def _assert_fits(text: str) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_report_fits_80_columns_with_long_names_and_big_numbers():
    day = datetime(2026, 12, 14, 9, 30, tzinfo=UTC).timestamp()
    records = [
        {
            "time": day + i,
            "tenant": tenant,
            "served_model": model,
            "status": "ok",
            "prompt_tokens": 12_345_678,
            "completion_tokens": 2_345_678,
            "cost_usd": 1234.567891,
            "region": "europe-west4",
            "allowed_regions": ["europe-west4"],
        }
        for i, (tenant, model) in enumerate(
            [("platform-search-relevance", "claude-sonnet-4-5-20250929"), ("team-eu", "gpt-4o-mini")]
        )
    ]
    budgets = [
        ("ai-gateway", Budget(name="platform-search-relevance-monthly", tenant="platform-search-relevance",
                              limit_usd="25000", timezone="Europe/Berlin")),
        ("ai-gateway", Budget(name="team-eu-daily", tenant="team-eu", limit_usd="5", period="daily")),
    ]  # fmt: skip
    since, until = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 15, 18, tzinfo=UTC)
    report = build_report(records, since, until, "OK: 2 records in 1 chains verified", budgets)
    console = _console()
    to_terminal(report, console)
    text = console.export_text()
    _assert_fits(text)
    assert "2026-12-01 00:00 .. 2026-12-15 18:00 UTC" in text
    assert "2026-12-14  platform-se" in text  # the day whole; a long tenant is folded onto more lines, not cut
    assert "1234.567891" in text and "12345678" in text
    assert "2026-12-01 .. 2027-01-01" in text and "2026-12-15 .. 2026-12-16" in text


def test_usage_fits_80_columns_and_shows_reservations_only_while_there_are_some():
    resets = "2027-01-01T00:00:00+01:00"
    lines = [
        UsageLine("team-eu", "team-eu-monthly", 12.3456, 0.0, 100.0, 87.6544, 12.35, "ok", resets),
        UsageLine("team-us", None, None, None, None, None, None, "no budget", None),
    ]
    console = _console()
    usage_to_terminal(lines, "ai-gateway/main", console)
    text = console.export_text()
    _assert_fits(text)
    assert "reserved" not in text and "12.3456" in text and "87.6544" in text

    lines[0] = UsageLine("team-eu", "team-eu-monthly", 0.00001, 0.0021, 100.0, 99.99999, 0.0, "ok", resets)
    console = _console()
    usage_to_terminal(lines, "ai-gateway/main", console)
    text = console.export_text()
    _assert_fits(text)
    assert "reserved" in text and "0.0021" in text
    assert "<0.0001" in text  # a spend too small for 4 decimals is not shown as nothing


def test_compact_times():
    assert short_time("2027-01-01T00:00:00+01:00") == "2027-01-01"
    assert short_time("2026-12-14T09:30:00+00:00") == "2026-12-14 09:30"
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert time_left("2027-01-01T00:00:00+01:00", now) == "25d 11h"
    assert time_left("2026-12-06T13:05:00+00:00", now) == "1h 5m"
    assert time_left("2026-12-06T12:07:00+00:00", now) == "7m"
    assert time_left("2026-12-06T11:00:00+00:00", now) == "0m"
