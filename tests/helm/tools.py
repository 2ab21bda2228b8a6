"""Locate helm/kubectl installed by scripts/ensure-tools.sh (never a preinstalled binary) and run them.

Every call has a timeout: a helm or kubectl waiting on a cluster must fail the test, never hang CI.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubegate"
TIMEOUT = 180.0


@cache
def bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-tools.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def run(
    tool: str, *args: str, check: bool = True, stdin: str | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(
            [str(bin_dir() / tool), *args], input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{tool} {' '.join(args[:3])} timed out after {timeout:.0f}s: {exc.stderr!r}") from None
    if check and res.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args[:3])} exited {res.returncode}:\n{res.stderr}")
    return res


def kubectl(cp, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl as cluster admin of the control plane ``cp``."""
    return run("kubectl", "--kubeconfig", str(cp.kubeconfig_path), *args, stdin=stdin, check=check)


def helm(cp, *args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return run("helm", "--kubeconfig", str(cp.kubeconfig_path), *args, check=check, timeout=timeout)


def helm_template(*set_args: str, namespace: str = "kubegate-system") -> str:
    argv = ["template", "r", str(CHART), "--namespace", namespace]
    for s in set_args:
        argv += ["--set", s]
    return run("helm", *argv).stdout
