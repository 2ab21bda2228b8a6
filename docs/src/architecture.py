"""Draws docs/architecture.svg: ``python docs/src/architecture.py`` (tests/helm/test_docs_pictures.py checks drift).

Boxes and arrows are data below; matplotlib lays them out. Deterministic output: fixed hash salt, no date.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parents[1] / "architecture.svg"

# name: (x, y, width, height, colour, label)
BOXES = {
    "git": (0.2, 6.6, 2.6, 1.0, "#eeeeee", "Git / kubectl\nLLMGateway, ModelRoute,\nTenant, Budget CRs"),
    "api": (3.6, 6.6, 2.6, 1.0, "#dbe8f6", "Kubernetes API server"),
    "op": (7.0, 6.6, 2.9, 1.0, "#dbe8f6", "kubegate operator (kopf)\nrender, status, Events,\nbudget webhooks"),
    "hook": (10.7, 6.6, 2.3, 1.0, "#f6e7db", "Slack / webhook\n(HMAC-signed)"),
    "client": (0.2, 3.4, 2.6, 1.2, "#eeeeee", "Tenant apps\n(OpenAI / Anthropic SDK)\ntenant key"),
    "proxy": (3.6, 2.6, 5.0, 2.8, "#e3f1e1", ""),
    "redis": (7.0, 0.2, 2.9, 1.4, "#fbe3e3", "Redis\npolicy, budgets, rate limits,\naudit stream (hash chain)"),
    "up": (10.7, 3.4, 2.3, 1.2, "#eeeeee", "Providers\nOpenAI, Azure, Anthropic,\nBedrock, Vertex"),
    "prom": (0.2, 0.2, 2.6, 1.4, "#f6e7db", "Prometheus / Grafana\nmetrics port, alerts\n(PrometheusRule)"),
    "cli": (3.6, 0.2, 2.9, 1.4, "#eeeeee", "kubegate CLI\naudit verify/export,\nreport, usage"),
}
PROXY_STAGES = [
    "front door: routes, bodies, headers",
    "tenant-key auth",
    "limits: rate + budget (Lua)",
    "residency routing",
    "PII masking (Presidio)",
    "LiteLLM router -> upstream",
    "restore, settle, audit, metrics",
]
# (from box, its side, to box, its side, label); sides: l r t b, or t0.3 for a point 30 % along the top.
ARROWS = [
    ("git", "r", "api", "l", "apply"),
    ("api", "r", "op", "l", "watch / status"),
    ("op", "r", "hook", "l", "threshold"),
    ("op", "b0.7", "redis", "t0.7", "publish policy,\nread spend"),
    ("client", "r", "proxy", "l", "HTTPS + tenant key"),
    ("proxy", "r", "up", "l", "in-region only"),
    ("proxy", "b0.8", "redis", "t0.2", "limits, audit"),
    ("prom", "t", "proxy", "b0.15", "scrape"),
    ("cli", "r", "redis", "l", "read"),
]


def _anchor(name: str, side: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[name]
    f = float(side[1:]) if len(side) > 1 else 0.5
    return {"l": (x, y + h * f), "r": (x + w, y + h * f), "t": (x + w * f, y + h), "b": (x + w * f, y)}[side[0]]


def draw() -> str:
    plt.rcParams["svg.hashsalt"] = "kubegate-architecture"
    plt.rcParams["svg.fonttype"] = "none"
    fig, ax = plt.subplots(figsize=(13.5, 8))
    ax.set_xlim(0, 13.2)  # boxes are laid out in these data units
    ax.set_ylim(0, 7.8)
    ax.axis("off")
    for x, y, w, h, colour, label in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555", lw=1.2))
        if label:
            ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=9)
    x, y, w, h, *_ = BOXES["proxy"]
    ax.text(
        x + w / 2,
        y + h - 0.25,
        "LiteLLM proxy + kubegate plugins (per Gateway)",
        ha="center",
        fontsize=10,
        weight="bold",
    )
    for i, stage in enumerate(PROXY_STAGES):
        ax.text(x + 0.3, y + h - 0.65 - i * 0.3, f"{i + 1}. {stage}", fontsize=8.5, va="center")
    for src, src_side, dst, dst_side, label in ARROWS:
        (x1, y1), (x2, y2) = _anchor(src, src_side), _anchor(dst, dst_side)
        arrow = FancyArrowPatch(
            (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=12, color="#333333", lw=1.0, shrinkA=4, shrinkB=4
        )
        ax.add_patch(arrow)
        ax.text(
            (x1 + x2) / 2,
            (y1 + y2) / 2 + 0.12,
            label,
            fontsize=7.5,
            ha="center",
            va="bottom",
            color="#333333",
            bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1},
        )
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buf.getvalue()


if __name__ == "__main__":
    OUT.write_text(draw())
    print(f"wrote {OUT}", file=sys.stderr)
