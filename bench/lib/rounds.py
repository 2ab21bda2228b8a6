"""Interleaved measurement rounds over live proxies, their medians, and the report lines of both proxy benches."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.lib import wrk as wrklib

METRICS = ("rps", "p50", "p99", "cpu_ms")
# Env of the ``vanilla-fixed`` proxy: only bench/lib/vanilla_fixed (its sitecustomize) on the path; the repo
# root would shadow the standard library's operator module, and gateway_plugins is installed in the venv.
VANILLA_FIXED_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parent / "vanilla_fixed")}


def line(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:13s} {r['rps']:8.1f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
        f"proxy CPU {r['cpu_ms']:6.2f} ms/request"
    )


def measure(
    wrk: str,
    variants: dict[str, tuple[Any, Path]],
    *,
    rounds: int,
    seconds: int,
    connections: int,
    path: str = "/v1/chat/completions",
) -> dict[str, list[dict[str, float]]]:
    """Run every variant (a started proxy and a wrk script) once per round, rotating the order each round so
    none always runs first; slow drifts of a shared machine then spread over all of them."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for rnd in range(rounds):
        names = list(variants)
        names = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in names:
            proxy, script = variants[name]
            r = wrklib.run(wrk, proxy, script, seconds=seconds, connections=connections, path=path)
            runs[name].append(r)
            print(f"round {rnd + 1} {line(name, r)}", flush=True)
    return runs


def medians(runs: dict[str, list[dict[str, float]]], *, rounds: int, seconds: int, connections: int) -> dict:
    med = {name: {k: statistics.median(r[k] for r in rs) for k in METRICS} for name, rs in runs.items()}
    print(
        f"\nmedians of {rounds} rounds; connections={connections} seconds={seconds}; same echo upstream; "
        f"{os.cpu_count()} cores shared with wrk, the echo upstream, Redis and anything else running"
    )
    for name, r in med.items():
        print(line(name, r))
    return med


def compare(med: dict, name: str, base_name: str) -> None:
    r, base = med[name], med[base_name]
    print(
        f"{name} / {base_name}: throughput x{r['rps'] / base['rps']:.3f}, p50 {r['p50'] - base['p50']:+.2f} ms, "
        f"p99 {r['p99'] - base['p99']:+.2f} ms, proxy CPU/request {r['cpu_ms'] - base['cpu_ms']:+.2f} ms, "
        f"requests per proxy CPU-second x{base['cpu_ms'] / r['cpu_ms']:.3f}"
    )
