"""Where a running ``kubegate dev`` says how to reach it, so ``usage``, ``report`` and ``audit`` need no flags.

``kubegate dev`` writes one small JSON file (mode 0600: it holds the dev Redis password) at
``$XDG_STATE_HOME/kubegate/dev.json`` (``~/.local/state/kubegate/dev.json`` when unset) once its proxy is up, and
removes it when it stops. The other commands read it only when no ``--redis-url`` is given; any flag still
overrides the value it names. Standard library only: ``kubegate --help`` must stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path


class DevStateError(RuntimeError):
    """No usable dev state: the message says what is missing and which flag or command fixes it."""


@dataclass(frozen=True, slots=True)
class DevState:
    pid: int  # the `kubegate dev` process; the file is stale once it is gone
    gateway: str
    namespace: str
    redis_url: str  # with the dev Redis password: never print it
    proxy_url: str
    audit_key_file: str  # base64 audit key, as `kubegate audit verify --key-file` takes it
    policy_file: str  # the signed policy document, the same bytes dev publishes to Redis
    policy_public_key: str  # verifies that document (as LLMGateway status.policyPublicKey does in a cluster)
    state_dir: str


def state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kubegate" / "dev.json"


def write(state: DevState, path: Path | None = None) -> Path:
    """Atomically, created 0600 (never readable by others, not even for an instant)."""
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(state), out, indent=2)
    os.replace(tmp, path)
    return path


def remove(pid: int, path: Path | None = None) -> None:
    """Remove the file if it is still the one process ``pid`` wrote (another dev may have started since)."""
    path = path or state_path()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if json.loads(path.read_text())["pid"] == pid:
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(path: Path | None = None) -> DevState:
    """The running dev gateway's state, or DevStateError saying why there is none."""
    path = path or state_path()
    start = "start `kubegate dev`, or pass --redis-url"
    try:
        data = json.loads(path.read_text())
        state = DevState(**{f.name: data[f.name] for f in fields(DevState)})
    except FileNotFoundError:
        raise DevStateError(
            f"no --redis-url given and no running `kubegate dev` ({path} does not exist): {start}"
        ) from None
    except OSError as exc:
        raise DevStateError(f"cannot read the `kubegate dev` state {path}: {exc.strerror}: {start}") from None
    except (ValueError, KeyError, TypeError):
        raise DevStateError(f"{path} is not a `kubegate dev` state file: delete it and {start}") from None
    if not _alive(state.pid):
        raise DevStateError(f"the `kubegate dev` that wrote {path} (pid {state.pid}) is no longer running: {start}")
    return state
