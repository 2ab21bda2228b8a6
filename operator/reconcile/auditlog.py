"""The audit transparency log's round for one Gateway: log the records written since the last round, sign a
checkpoint (``gateway_plugins.policy.audit.transparency``); runs inside the audit checkpoint round.

The state, the signed checkpoint and the verifier key are keys of the checkpoint ConfigMap
``{gateway}-audit-checkpoints`` (``tlog-state``, ``tlog-checkpoint``, ``tlog-public-key``); the signing key is the
Secret ``{gateway}-kubegate-audit-log-signing`` that no proxy mounts.

Witnesses: whoever runs them puts their output (the checkpoint with cosignatures, ``kubegate audit witness``) in key
``tlog-cosignatures``. While the tree has not grown, the round's checkpoint is that same text (Ed25519 signatures
are deterministic), and the operator writes it with those cosignatures; the latest checkpoint that carried any
stays in ``tlog-witnessed-checkpoint`` after the tree grows, for verifiers that require a quorum.
"""

from __future__ import annotations

import base64
import itertools
import logging
from typing import Any

from gateway_operator.builders.common import log_signing_secret_name
from gateway_operator.builders.trust import LOG_SIGNING_FIELD
from gateway_operator.reconcile.trust import log_signer_from
from kubernetes import client

from gateway_plugins.policy.audit.note import NoteSigner
from gateway_plugins.policy.audit.transparency import (
    CHECKPOINT_KEY,
    PUBLIC_KEY_KEY,
    STATE_KEY,
    LogState,
    advance,
    sign,
)
from gateway_plugins.policy.audit.verify import stream_entries
from gateway_plugins.policy.audit.witness import CosignerKey, cosigned_by, merge_cosignatures, trusted_cosignatures

COSIGNATURES_KEY = "tlog-cosignatures"
WITNESSED_KEY = "tlog-witnessed-checkpoint"

log = logging.getLogger("kubegate.operator")
# Records logged per round at most: a round stays short; the rest follows in the next rounds.
MAX_PER_ROUND = 200_000


def signer(core: client.CoreV1Api, gw: dict[str, Any]) -> NoteSigner | None:
    """The log's signer; None until the Gateway's reconcile created its Secret."""
    meta = gw["metadata"]
    try:
        secret = core.read_namespaced_secret(log_signing_secret_name(meta["name"]), meta["namespace"])
        return log_signer_from(base64.b64decode((secret.data or {})[LOG_SIGNING_FIELD]).decode(), gw)
    except (client.ApiException, KeyError, ValueError) as exc:
        log.info("audit log of %s/%s: no signing key yet (%s)", meta["namespace"], meta["name"], type(exc).__name__)
        return None


def _state(data: dict[str, str], origin: str) -> LogState:
    raw = data.get(STATE_KEY)
    if raw:
        try:
            state = LogState.loads(raw)
            if state.origin == origin:
                return state
            log.warning("audit log: state of origin %s replaced by a new log %s", state.origin, origin)
        except (ValueError, KeyError, TypeError):
            log.warning("audit log: unreadable %s in the checkpoint ConfigMap; the log starts again", STATE_KEY)
    return LogState(origin)


def witnesses_of(gw: dict[str, Any]) -> tuple[list[CosignerKey], int] | None:
    """The Gateway's spec.audit.witnesses as keys and quorum; None when it names none (validated at admission and
    by the reconcile, so a key that does not parse here is skipped rather than stopping the log)."""
    spec = (((gw.get("spec") or {}).get("audit") or {}).get("witnesses")) or {}
    keys = []
    for text in spec.get("keys") or []:
        try:
            keys.append(CosignerKey.parse(text))
        except ValueError:
            continue
    return (keys, int(spec.get("quorum") or 1)) if keys else None


def witnessed_status(data: dict[str, str], witnesses: tuple[list[CosignerKey], int]) -> dict[str, Any]:
    """status.auditWitnesses: the latest cosigned checkpoint's size, its valid cosigners, and the quorum."""
    keys, quorum = witnesses
    note = data.get(WITNESSED_KEY)
    names = cosigned_by(note, keys) if note else []
    size = None
    if note:
        lines = note.split("\n")
        size = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
    return {"treeSize": size, "cosignedBy": names, "quorum": quorum, "quorumMet": len(names) >= quorum}


def log_round(
    conn: Any,
    stream: str,
    key: bytes,
    note_signer: NoteSigner,
    data: dict[str, str],
    witnesses: list[CosignerKey] | None = None,
) -> tuple[dict, str | None]:
    """(the ConfigMap keys of the log after this round, why the log stopped at a record or None).

    With ``witnesses``, only their valid cosignatures are carried; without, whatever was handed in."""
    state = _state(data, note_signer.name)
    first = conn.xrange(stream, count=1)
    first_id = first[0][0].decode() if first else None
    start = f"({state.last_id}" if state.last_id else "-"
    entries = itertools.islice(stream_entries(conn, stream, start), MAX_PER_ROUND)
    state, refused = advance(state, entries, key, first_id)
    if state.size == 0 and STATE_KEY not in data:
        return {}, refused  # nothing logged yet: no ConfigMap for a Gateway without records
    note = sign(state, note_signer)
    out = {STATE_KEY: state.dumps(), CHECKPOINT_KEY: note, PUBLIC_KEY_KEY: note_signer.vkey()}
    submitted = data.get(COSIGNATURES_KEY)
    if witnesses is None:
        cosigned = merge_cosignatures(note, submitted)
    else:
        cosigned = trusted_cosignatures(note, submitted, witnesses)
    if cosigned is not None and cosigned != note:
        out[CHECKPOINT_KEY] = out[WITNESSED_KEY] = cosigned
    return out, refused
