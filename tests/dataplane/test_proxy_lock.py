"""The proxy image's lock is a hash-locked subset of requirements.lock without the operator's dependencies."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", re.M)


def _pins(name: str) -> dict[str, str]:
    return {pkg.lower(): version for pkg, version in PIN.findall((REPO / name).read_text())}


def test_proxy_lock_is_a_subset_without_kopf():
    full, proxy = _pins("requirements.lock"), _pins("requirements-proxy.lock")
    assert "litellm" in proxy and "presidio-analyzer" in proxy
    assert "kopf" not in proxy and "kubernetes" not in proxy
    assert {pkg: v for pkg, v in proxy.items() if full.get(pkg) != v} == {}
    text = (REPO / "requirements-proxy.lock").read_text()
    assert all("--hash=sha256:" in block for block in re.split(r"\n(?=[A-Za-z0-9])", text) if "==" in block)
