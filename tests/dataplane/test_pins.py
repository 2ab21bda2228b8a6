"""Supply-chain pins: no malicious litellm, every locked requirement exact and hashed."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD_LITELLM = {"1.82.7", "1.82.8"}


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (requirement line, hashes) from a pip-compile style lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith(" "):
            req = stripped.rstrip("\\").strip()
            current = re.split(r"[=<>!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
            entries[current] = (req, [])
        elif stripped.startswith("--hash=sha256:") and current:
            entries[current][1].append(stripped)
    return entries


def test_installed_litellm_is_not_a_malicious_release():
    assert importlib.metadata.version("litellm") not in BAD_LITELLM


LOCKS = [
    "requirements.lock",
    *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("tests/clients/requirements*.lock"))),
]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_line_is_exact_and_hashed(lock):
    entries = lock_entries((ROOT / lock).read_text())
    assert len(entries) > 20
    assert "litellm" not in entries or entries["litellm"][0].split("==", 1)[1] not in BAD_LITELLM
    for name, (req, hashes) in entries.items():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s;]+(\s*;.*)?", req), f"{name}: not == pinned: {req}"
        assert hashes, f"{name}: no --hash"


def test_lock_pins_litellm_to_the_pyproject_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(d for d in project["dependencies"] if d.startswith("litellm"))
    version = pin.split("==", 1)[1]
    assert version not in BAD_LITELLM
    req, _ = lock_entries((ROOT / "requirements.lock").read_text())["litellm"]
    assert req.split("==", 1)[1].split(";")[0].strip() == version


def test_client_clis_are_pinned_exactly():
    package = json.loads((ROOT / "tests/clients/node/package.json").read_text())
    lock = json.loads((ROOT / "tests/clients/node/package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: not an exact version: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")


def test_lock_parser_catches_an_unpinned_line():
    entries = lock_entries("litellm>=1.0\n    --hash=sha256:abc\n")
    req, _ = entries["litellm"]
    assert not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s;]+(\s*;.*)?", req)
