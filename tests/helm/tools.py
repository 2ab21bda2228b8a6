"""Locate helm/kubectl installed by scripts/ensure-tools.sh (never a preinstalled binary)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubegate"


@cache
def bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-tools.sh")], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def run(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir() / tool), *args], capture_output=True, text=True, check=check)


def helm_template(*set_args: str, namespace: str = "kubegate-system") -> str:
    argv = ["template", "r", str(CHART), "--namespace", namespace]
    for s in set_args:
        argv += ["--set", s]
    return run("helm", *argv).stdout
