"""``kubegate report`` and ``kubegate usage`` from a real run: the quickstart CRs rendered as the operator does, a real
LiteLLM proxy with kubegate, real Redis, the echo upstream, the openai SDK as client; the HTML report opened in
headless Chromium (Debian's package, scripts/ensure-chromium.sh) to check that its charts render."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import openai
import pytest
from gateway_operator.dev import load_objects, point_at_echo
from gateway_operator.render import render_gateway

from gateway_plugins.policy.schema import hash_key
from gateway_plugins.policy.store import keys_of, publish_policy_sync
from tests.harness.procs import wait_until
from tests.harness.proxy import AUDIT_KEY_B64, SIGNER

REPO = Path(__file__).resolve().parents[2]
KUBEGATE = str(Path(sys.executable).parent / "kubegate")
KEYS = {"team-eu": "sk-kg-report-eu-" + "1" * 24, "team-us": "sk-kg-report-us-" + "2" * 24}


def chromium() -> str:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-chromium.sh")], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, f"scripts/ensure-chromium.sh failed:\n{out.stderr[-2000:]}"
    return out.stdout.strip().splitlines()[-1]


def kubegate(*args: str) -> subprocess.CompletedProcess:
    # The keys a user passes from the Gateway's Secret and status: the audit key verifies, the public key reads the policy.
    env = {
        **os.environ,
        "PYTHONSAFEPATH": "1",
        "KUBEGATE_AUDIT_KEY": AUDIT_KEY_B64,
        "KUBEGATE_POLICY_PUBLIC_KEY": SIGNER.public_key_b64,
    }
    return subprocess.run([KUBEGATE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def quickstart_run(make_proxy, echo_upstream, redis_server):
    """The quickstart gateway under a unique name, after a mix of served, masked, refused and blocked requests."""
    objects = load_objects(REPO / "examples" / "quickstart")
    gateway = objects["LLMGateway"][0].model_copy(deep=True)
    gateway.metadata.name = f"rep{uuid.uuid4().hex[:8]}"
    gateway.metadata.namespace = "default"  # the CLI's default namespace: commands below name the gateway only
    tenants = [t.model_copy(deep=True) for t in objects["Tenant"]]
    for t in tenants:
        t.spec.gateway = gateway.metadata.name
    routes = [r.model_copy(deep=True) for r in objects["ModelRoute"]]
    for r in routes:
        r.spec.gateway = gateway.metadata.name
    rendered = render_gateway(
        gateway,
        routes,
        tenants,
        objects["Budget"],
        tenant_key_hashes={t: [hash_key(k)] for t, k in KEYS.items()},
        revision=1,
    )
    config = point_at_echo(rendered.litellm_config, echo_upstream.api_base())
    proxy = make_proxy(config, rendered.policy, redis_url=redis_server.url)

    def client(tenant: str | None, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key or KEYS[tenant], max_retries=0, timeout=60)

    eu, us = client("team-eu"), client("team-us")
    say = lambda c, model, text: c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])  # noqa: E731
    for i in range(3):
        say(eu, "gpt-4o", f"mail jane.doe{i}@example.com about the invoice")
    say(eu, "gpt-4o-mini", "summarise the meeting notes")
    say(us, "gpt-4o", "hello from the US team")
    say(us, "gpt-4o-mini", "another US request with more words in it")
    refused = 0
    for call in (
        lambda: say(eu, "gpt-4o", "my card is 4111 1111 1111 1111"),  # CREDIT_CARD: block
        lambda: say(client(None, "sk-kg-not-a-key"), "gpt-4o", "x"),
    ):
        with pytest.raises(openai.APIStatusError):
            call()
        refused += 1
    stream = keys_of(rendered.policy).audit_stream
    r = redis_server.client()
    wait_until(lambda: r.xlen(stream) >= 6 + refused, timeout=60, what="audit records in the stream")
    publish_policy_sync(
        r, rendered.policy, SIGNER
    )  # as the operator does in a cluster; `kubegate usage` reads it there
    return gateway.metadata.name, stream


def test_report_from_a_real_run_terminal_csv_and_html_in_chromium(quickstart_run, redis_server, tmp_path):
    gateway, _ = quickstart_run
    csv_path, html_path = tmp_path / "report.csv", tmp_path / "report.html"
    res = kubegate(
        *("report", "--redis-url", redis_server.url, "--gateway", gateway, "--since", "2000-01-01"),
        *("--budgets", str(REPO / "examples" / "quickstart"), "--csv", str(csv_path), "--html", str(html_path)),
    )
    assert res.returncode == 0, res.stderr
    assert "integrity: OK: 8 records" in res.stdout, res.stdout

    rows = list(csv.DictReader(csv_path.open()))
    by = {(r["tenant"], r["model"]): r for r in rows}
    assert {t for t, _ in by} == {"team-eu", "team-us"}
    served = {k: int(r["requests"]) for k, r in by.items()}
    assert sum(v for (t, _), v in served.items() if t == "team-eu") == 4
    assert sum(v for (t, _), v in served.items() if t == "team-us") == 2
    assert all(float(r["cost_usd"]) > 0 and int(r["prompt_tokens"]) > 0 for r in rows), rows
    refusals = {
        (r["tenant"], r["reason"]): int(r["count"]) for r in csv.DictReader((tmp_path / "report-refusals.csv").open())
    }
    assert refusals[("team-eu", "pii_blocked")] == 1 and sum(refusals.values()) == 2, refusals
    pii = {(r["tenant"], r["entity"]): int(r["count"]) for r in csv.DictReader((tmp_path / "report-pii.csv").open())}
    assert pii[("team-eu", "EMAIL_ADDRESS")] == 3, pii
    regions = list(csv.DictReader((tmp_path / "report-regions.csv").open()))
    eu_rows = [g for g in regions if g["tenant"] == "team-eu"]
    # team-eu may only use eu-west-1: every one of its requests was restricted and kept there.
    assert {g["region"] for g in eu_rows} == {"eu-west-1"}
    assert sum(int(g["restricted"]) for g in eu_rows) == sum(int(g["in_region"]) for g in eu_rows) == 4
    budgets = list(csv.DictReader((tmp_path / "report-budgets.csv").open()))
    (budget,) = budgets
    eu_cost = sum(float(r["cost_usd"]) for r in rows if r["tenant"] == "team-eu")
    assert budget["budget"] == "team-eu-monthly" and float(budget["limit_usd"]) == 100.0
    assert float(budget["spent_usd"]) == pytest.approx(eu_cost, abs=1e-6)

    page = html_path.read_text()
    # Self-contained: nothing fetched from anywhere when a reviewer opens it offline.
    for fetch in ("<script", "<link", "<img", "<iframe", "@import", 'src="', 'href="http'):
        assert fetch not in page, fetch
    assert not re.search(r"url\((?!#)", page), "a url() that is not a reference inside the page"
    assert page.count("<svg") == 4

    browser = chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    flags += ["--disable-background-networking", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=180
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in ("cost-over-time", "top-models", "refusals", "pii"):
        start = dom.stdout.index(f'id="chart-{chart}"')
        figure = dom.stdout[start : dom.stdout.index("</figure>", start)]
        assert "<svg" in figure and "no data" not in figure, chart
    # The parsed DOM keeps the SVG drawing: axes and series paths are there, and the text we expect is text.
    assert dom.stdout.count("<path") > 20 and "team-eu" in dom.stdout and "EMAIL_ADDRESS" in dom.stdout

    shot = tmp_path / "report.png"
    res = subprocess.run(
        [browser, *flags, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,1400", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    _assert_charts_painted(shot)
    if os.environ.get("KUBEGATE_REPORT_SCREENSHOT"):  # docs/report.png is made this way
        shutil.copy(shot, os.environ["KUBEGATE_REPORT_SCREENSHOT"])


def _assert_charts_painted(png: Path) -> None:
    """Not blank: many distinct colours, and the chart colours (matplotlib's lines and bars) are on the page."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(str(png))[..., :3]
    pixels = (img.reshape(-1, 3) * 255).round().astype(int)
    colours = {tuple(p) for p in pixels[:: max(1, len(pixels) // 200_000)]}
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} colours"
    non_white = (pixels.min(axis=1) < 240).mean()
    assert non_white > 0.03, f"only {non_white:.1%} of the page is painted"
    for hex_colour in ("#4C72B0", "#C44E52", "#8172B3"):  # cost/top-models, refusals, PII bars
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).max(axis=1) <= 6).sum() > 200, f"no {hex_colour} chart pixels in the screenshot"


def test_report_from_an_export_file_matches_and_names_bad_lines(quickstart_run, redis_server, tmp_path):
    gateway, stream = quickstart_run
    export = tmp_path / "audit.jsonl"
    res = kubegate("audit", "export", "--redis-url", redis_server.url, "--stream", stream, "--out", str(export))
    assert res.returncode == 0, res.stderr
    res = kubegate("report", "--input", str(export), "--since", "2000-01-01", "--csv", str(tmp_path / "f.csv"), "-q")
    assert res.returncode == 0, res.stderr
    from_file = list(csv.DictReader((tmp_path / "f.csv").open()))
    kubegate(
        "report",
        "--redis-url",
        redis_server.url,
        "--gateway",
        gateway,
        "--since",
        "2000-01-01",
        "--csv",
        str(tmp_path / "r.csv"),
        "-q",
    )
    assert from_file == list(csv.DictReader((tmp_path / "r.csv").open()))

    # A record altered in the file: the integrity line says so and the exit code is 1.
    lines = export.read_text().splitlines()
    lines[2] = lines[2].replace('"completion_tokens": ', '"completion_tokens": 1')
    export.write_text("\n".join(lines) + "\n")
    res = kubegate("report", "--input", str(export), "--since", "2000-01-01", "-q")
    assert res.returncode == 1
    export.write_text("{not json\n")
    res = kubegate("report", "--input", str(export))
    assert (
        res.returncode == 1 and f"{export}:1: not a JSON audit record" in res.stderr and "Traceback" not in res.stderr
    )


def usage_rows(stdout: str) -> dict[str, dict[str, str]]:
    """`kubegate usage`'s table by tenant and column header (cells are separated by two spaces or more)."""
    lines = [line.strip() for line in stdout.splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("tenant "))
    names = re.split(r"\s{2,}", lines[header])
    rows = {}
    for line in lines[header + 2 :]:
        if line.startswith("kubegate usage:"):
            break  # the next table's title (tokens, by served model)
        if line:
            cells = re.split(r"\s{2,}", line)
            assert len(cells) == len(names), (names, line)
            rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_usage_shows_spend_state_and_remaining_per_tenant(quickstart_run, redis_server):
    gateway, _ = quickstart_run
    res = kubegate("usage", "--redis-url", redis_server.url, "--gateway", gateway)
    assert res.returncode == 0, res.stderr
    rows = usage_rows(res.stdout)
    eu = rows["team-eu"]
    assert eu["budget"] == "team-eu-monthly" and eu["limit"] == "100" and eu["state"] == "ok"
    spent, remaining = float(eu["spent"]), float(eu["left"])
    assert spent > 0 and remaining == pytest.approx(100 - spent, abs=1e-4)
    us = rows["team-us"]
    assert us["budget"] == "-" and us["state"] == "no budget"
    # The budget's spend by served model (what a cost-routed name chose would show here too).
    assert "this period by served model (USD)" in res.stdout
    res = kubegate("usage", "--redis-url", redis_server.url, "--gateway", "no-such-gateway")
    assert res.returncode == 1 and "no policy for gateway default/no-such-gateway" in res.stderr
