"""The API server's own audit log of ServiceAccount writes: the exact write requests the operator made."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# Metadata only (no bodies: key Secrets never reach the log), ServiceAccounts only, writes only.
POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"], "verbs": list(WRITE_VERBS)},
        {"level": "None"},
    ],
}


def apiserver_args(directory: Path) -> tuple[Sequence[str], Path]:
    """kube-apiserver flags that write the audit log into ``directory``, and the log's path."""
    policy = directory / "audit-policy.json"
    policy.write_text(json.dumps(POLICY))  # JSON is YAML
    log = directory / "audit.log"
    return (
        [f"--audit-policy-file={policy}", f"--audit-log-path={log}", "--audit-log-mode=blocking"],
        log,
    )


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, user: str, since: int = 0) -> list[str]:
        """``verb resource[/subresource] name`` of each completed write by ``user`` after offset ``since``."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(since)
            lines = fh.read().splitlines()
        out = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if event.get("stage") != "ResponseComplete" or event["user"].get("username") != user:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            out.append(f"{event['verb']} {resource} {ref.get('name', '')}".rstrip())
        return out

    def quiet(self, user: str, seconds: float = 3.0, timeout: float = 90.0) -> int:
        """Wait until ``user`` wrote nothing for ``seconds`` (resync and budget loops run inside that window);
        returns the offset at that point. Waiting is set-up; what tests assert is the count of writes."""
        deadline = time.monotonic() + timeout
        offset = self.mark()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.mark()
            if self.writes(user, offset):
                quiet_since = time.monotonic()
            offset = now
            if time.monotonic() - quiet_since >= seconds:
                return offset
        raise AssertionError(f"{user} kept writing for {timeout:.0f}s: {self.writes(user, self.mark() - 20000)[-20:]}")
