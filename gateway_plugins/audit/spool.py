"""Disk copy of the audit records a writer could not get into Redis, so a crash during an outage loses none.

One JSON Lines file per writer chain in the spool directory, held under an exclusive ``flock`` for as long
as its writer lives. A file whose lock can be taken belongs to a writer that died (a crashed worker or the
previous container of the pod, when the directory is a volume that outlives it): the next writer replays
it into the stream, skipping what the chain head in Redis shows was already written, then deletes it.
All methods do blocking file I/O: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpooledRecord:
    seq: int
    hash: str
    payload: bytes


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _file_name(chain: str) -> str:
    return safe_name(chain) + ".jsonl"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class DiskSpool:
    """The spool file of one live writer."""

    def __init__(self, directory: str | os.PathLike, chain: str) -> None:
        self.dir = Path(directory)
        self.path = self.dir / _file_name(chain)
        self._fd: int | None = None
        self.size = 0

    def _open(self) -> int:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = _try_lock(self.path)
            if fd is None:
                raise RuntimeError(f"audit spool {self.path} is locked by another writer")
            self._fd = fd
        return self._fd

    def append(self, records: list[SpooledRecord]) -> None:
        """Append and fsync: once this returns, the records survive a crash of this process."""
        fd = self._open()
        lines = b"".join(
            json.dumps({"seq": r.seq, "hash": r.hash, "r": r.payload.decode()}).encode() + b"\n" for r in records
        )
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, lines)
        os.fsync(fd)
        self.size += len(records)

    def clear(self) -> None:
        """Everything spooled is in Redis now."""
        if self._fd is not None and self.size:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        self.size = 0

    def close(self) -> None:
        """Release the lock; an empty file is removed, a non-empty one is left for the next writer."""
        if self._fd is None:
            return
        if self.size == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


class OrphanSpool:
    """A dead writer's spool file, locked by us until replayed (``done``) or given back (``release``)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def read(self) -> tuple[str | None, list[SpooledRecord]]:
        """(chain, records in seq order); a torn last line from the crash is ignored."""
        records: dict[int, SpooledRecord] = {}
        chain = None
        for line in self.path.read_bytes().splitlines():
            try:
                item = json.loads(line)
                record = SpooledRecord(int(item["seq"]), str(item["hash"]), item["r"].encode())
                chain = chain or json.loads(record.payload)["chain"]
            except (ValueError, KeyError, TypeError):
                continue
            records[record.seq] = record
        return chain, [records[seq] for seq in sorted(records)]

    def done(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        os.close(self._fd)


def find_orphans(directory: str | os.PathLike, own: Path | None = None) -> list[OrphanSpool]:
    """Spool files in ``directory`` whose writers are gone (their lock is free), locked for us."""
    found = []
    base = Path(directory)
    if not base.is_dir():
        return found
    for path in sorted(base.glob("*.jsonl")):
        if own is not None and path == own:
            continue
        fd = _try_lock(path)
        if fd is None:
            continue  # a live writer (another worker of this pod) owns it
        if os.fstat(fd).st_size == 0:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)
            continue
        found.append(OrphanSpool(path, fd))
    return found
