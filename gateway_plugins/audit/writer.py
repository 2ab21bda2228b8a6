"""AuditWriter: in-process queue -> background sealing task -> batched MULTI/EXEC to a Redis stream.

* ``submit`` is O(1) and never raises: it appends the record to a deque and wakes the task.
* The task seals records in submission order (one chain per writer instance: ``chain`` id,
  ``seq``, ``prev``, ``hash`` = HMAC with the Gateway's audit key) and moves them to the spool, then
  writes up to ``batch`` spooled records plus the tagged chain head ``{seq}:{mac}:{tag}`` (hash
  ``<stream>:heads``) in ONE transaction, so a truncated tail is detectable by ``verify``; the operator
  copies heads into a checkpoint ConfigMap that Redis writers cannot roll back.
* The stream cap (``maxlen``) is applied by a script in the same transaction that, before deleting the
  oldest entries, records per chain the last (seq, MAC) it trimmed (hash ``<stream>:trimmed``), so
  ``verify`` tells trimming from deletion. ``kubegate audit export --follow`` keeps a copy before that. With
  ``<stream>:exported`` set (the operator exports sealed segments, ``spec.audit.export``), nothing after that
  stream id is trimmed, whatever the cap: records leave Redis only once exported and checkpointed.
* Redis down: sealed records stay in the in-memory spool (bounded by ``max_spool``) and are written
  in order once Redis answers again (exponential backoff up to 5 s). Hashes were fixed at sealing
  time, so the chain stays valid across the outage. A batch is appended only past its chain's head, so
  retrying one whose reply was lost (Redis committed it, the client timed out) writes nothing twice.
* Spool full: the OLDEST record is dropped (the newest tell the most about a live incident); the
  chain then has a gap that ``verify`` reports, which is the honest, tamper-evident outcome, and
  ``kubegate_audit_records_total{outcome="dropped"}`` counts it.
* With ``spool_dir``, records that wait for Redis are also appended (fsync'd) to a per-chain file
  (``gateway_plugins.audit.spool``), so a crash during an outage loses none: the next writer to start
  with that directory replays a dead writer's file into the stream, skipping what its chain head in
  Redis shows was already written (``kubegate_audit_records_total{outcome="recovered"}``).
* Refusals without a valid key go through ``unauthenticated`` (``gateway_plugins.audit.unauthenticated``):
  a sample and a count per reason and source class per window, so a flood cannot evict tenants' records.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from gateway_plugins import replicated
from gateway_plugins.audit import metrics
from gateway_plugins.audit.spool import DiskSpool, OrphanSpool, SpooledRecord, find_orphans, safe_name
from gateway_plugins.audit.unauthenticated import RefusalSummary
from gateway_plugins.policy.audit.chain import (
    GENESIS,
    KEY_BYTES,
    canonical,
    checkpoint_tag,
    head_value,
    parse_head,
    seal,
)
from gateway_plugins.policy.keys import audit_exported, audit_heads, audit_trims

log = logging.getLogger(__name__)
# Entries trimmed per transaction at most: keeps one script run short; batches are smaller than this.
TRIM_CHUNK = 1000
# How often each process reads the export lag (two cheap Redis reads).
EXPORT_LAG_SECONDS = 15.0

# KEYS: stream, trim marks, exported id; ARGV: maxlen, chunk. Deletes the oldest entries above maxlen, first raising
# each trimmed chain's mark to the last (seq, mac) removed. Records are canonical JSON in field "r". When the exported
# id exists (the Gateway exports its records), nothing after it is trimmed: retention by export, not by cap.
TRIM_LUA = """
local n = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if n <= 0 then return 0 end
if n > tonumber(ARGV[2]) then n = tonumber(ARGV[2]) end
local upto = redis.call('GET', KEYS[3]) or '+'
local entries = redis.call('XRANGE', KEYS[1], '-', upto, 'COUNT', n)
if #entries == 0 then return 0 end
local last = {}
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'r' then
      local ok, rec = pcall(cjson.decode, f[i + 1])
      if ok and type(rec) == 'table' and type(rec.chain) == 'string' and type(rec.seq) == 'number'
          and type(rec.hash) == 'string' then
        local cur = last[rec.chain]
        if cur == nil or rec.seq > cur[1] then last[rec.chain] = {rec.seq, rec.hash} end
      end
    end
  end
end
for chain, v in pairs(last) do
  local prev = redis.call('HGET', KEYS[2], chain)
  if (not prev) or tonumber(string.match(prev, '^(%d+):')) < v[1] then
    redis.call('HSET', KEYS[2], chain, string.format('%d:%s', v[1], v[2]))
  end
end
local ms, sq = string.match(entries[#entries][1], '^(%d+)-(%d+)$')
redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%d', tonumber(sq) + 1))
return #entries
"""

# KEYS: stream, heads; ARGV: chain, new head value, then (seq, record) pairs in seq order. Appends only the
# records past the chain's head. A transaction whose reply was lost (a timeout after Redis committed it) is
# retried by the writer; this makes the retry a no-op instead of a second copy of every record in it.
APPEND_LUA = """
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local written = 0
if prev then written = tonumber(string.match(prev, '^(%d+):')) or 0 end
local added = 0
for i = 3, #ARGV, 2 do
  if tonumber(ARGV[i]) > written then
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i + 1])
    added = added + 1
  end
end
if tonumber(ARGV[#ARGV - 1]) > written then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return added
"""


def heads_key(stream: str) -> str:
    return audit_heads(stream)


def new_chain_id() -> str:
    # Unique per writer instance: a restarted pod starts a fresh chain instead of forking an old one.
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


class AuditWriter:
    def __init__(
        self,
        redis: Any,
        stream: str,
        spool_dir: str | None = None,
        *,
        maxlen: int = 1_000_000,
        max_spool: int = 100_000,
        batch: int = 256,
        chain_id: str | None = None,
        max_backoff: float = 5.0,
        key: bytes | None = None,
        unauthenticated_window: float = 60.0,
        replica_acks: int = 0,
    ) -> None:
        if not stream:
            raise ValueError("stream: must be a non-empty Redis key")
        if max_spool < 1 or batch < 1:
            raise ValueError("max_spool and batch: must be >= 1")
        self.redis = redis
        self.replica_acks = replica_acks
        self.stream = stream
        self.heads = heads_key(stream)
        self.trims = audit_trims(stream)
        self.exported = audit_exported(stream)
        if key is None:
            # Records stay chained but nobody else can verify them: a configuration error, said loudly.
            log.error("audit: no audit key (KUBEGATE_AUDIT_KEY); records are keyed with a throw-away key")
            key = secrets.token_bytes(KEY_BYTES)
        self.key = key
        self.maxlen = maxlen
        self.max_spool = max_spool
        self.batch = batch
        self.max_backoff = max_backoff
        self.chain = chain_id or new_chain_id()
        self.seq = 0
        self.prev = GENESIS
        self._queue: collections.deque[dict] = collections.deque()
        # Sealed, encoded records waiting for Redis: (seq, hash, payload, already_counted_as_spooled).
        self._spool: collections.deque[list] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.recovered = 0
        # One sub-directory per stream: a dead writer's records are only ever replayed into their own stream.
        self.spool_dir = str(Path(spool_dir) / safe_name(stream)) if spool_dir else None
        self._disk = DiskSpool(self.spool_dir, self.chain) if self.spool_dir else None
        self._orphans_pending = spool_dir is not None
        # Refusals without a valid key: one sample per reason and source class, and a count, per window.
        self.unauthenticated = RefusalSummary(self.submit, unauthenticated_window)
        self._lag_task: asyncio.Task | None = None

    @classmethod
    def from_settings(cls, settings: Any, redis: Any) -> AuditWriter:
        if redis is None and getattr(settings, "redis_url", None):
            from gateway_plugins.policy.redis_client import connect_async

            redis = connect_async(
                settings.redis_url,
                username=getattr(settings, "redis_username", None),
                password=getattr(settings, "redis_password", None),
                ca_file=getattr(settings, "redis_ca_file", None),
                cert_file=getattr(settings, "redis_cert_file", None),
                key_file=getattr(settings, "redis_key_file", None),
                socket_timeout=2,
                socket_connect_timeout=2,
            )
        from gateway_plugins.policy.audit.chain import decode_key

        key = decode_key(settings.audit_key) if getattr(settings, "audit_key", None) else None
        return cls(
            redis=redis,
            stream=settings.audit_stream,
            spool_dir=settings.audit_spool_dir,
            key=key,
            maxlen=getattr(settings, "audit_stream_maxlen", 1_000_000),
            max_spool=getattr(settings, "audit_spool_max", 100_000),
            unauthenticated_window=getattr(settings, "audit_unauthenticated_window", 60.0),
            replica_acks=getattr(settings, "redis_replica_acks", 0),
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kubegate-audit-writer")
        self.unauthenticated.start()
        if self._lag_task is None and self.redis is not None:
            self._lag_task = asyncio.get_running_loop().create_task(self._watch_export(), name="kubegate-audit-lag")

    def submit(self, record: dict) -> None:
        try:
            self._queue.append(record)
            self._wake.set()
        except Exception:  # never let auditing break a request
            log.exception("audit submit failed")

    @property
    def spool_depth(self) -> int:
        return len(self._spool)

    def pending(self) -> int:
        return len(self._queue) + len(self._spool)

    def _seal_queued(self) -> None:
        while self._queue:
            record = self._queue.popleft()
            try:
                sealed = seal(record, self.chain, self.seq + 1, self.prev, self.key)
                payload = canonical(sealed)
            except Exception:
                log.exception("audit record could not be encoded; dropped")
                metrics.RECORDS.labels("dropped").inc()
                self.dropped += 1
                continue
            self.seq += 1
            self.prev = sealed["hash"]
            self._spool.append([self.seq, sealed["hash"], payload, False])
            if len(self._spool) > self.max_spool:
                self._spool.popleft()
                self.dropped += 1
                metrics.RECORDS.labels("dropped").inc()
        metrics.SPOOL_DEPTH.set(len(self._spool))

    async def _append(self, chain: str, records: list) -> None:
        """One transaction: the sealed records (``(seq, hash, payload, …)`` in seq order) and their chain head."""
        seq, hash_ = records[-1][0], records[-1][1]
        head = head_value(seq, hash_, checkpoint_tag(self.key, chain, seq, hash_))
        pairs = [part for record in records for part in (record[0], record[2])]
        commands = [
            ("EVAL", APPEND_LUA, 2, self.stream, self.heads, chain, head, *pairs),
            ("EVAL", TRIM_LUA, 3, self.stream, self.trims, self.exported, self.maxlen, TRIM_CHUNK),
        ]
        started = time.perf_counter()
        if self.replica_acks > 0:
            # MULTI … EXEC then WAIT, spelled out on one connection (redis-py's transaction pipeline cannot carry a
            # WAIT after EXEC, and WAIT inside MULTI does not block).
            wait = ("WAIT", self.replica_acks, replicated.WAIT_MS)
            replies = await replicated.on_one_connection(
                self.redis, self.stream, ("MULTI",), *commands, ("EXEC",), wait
            )
            replicated.raise_queued_error(replies[-2])
            # Not confirmed: raised, so the records stay spooled and are appended again (APPEND_LUA skips what
            # the chain head already has, if the first append did survive).
            replicated.check(replies[-1], self.replica_acks)
        else:
            pipe = self.redis.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()
        metrics.WRITE_SECONDS.observe(time.perf_counter() - started)

    async def _write_batch(self) -> None:
        items = [self._spool[i] for i in range(min(self.batch, len(self._spool)))]
        await self._append(self.chain, items)
        # Records may have been dropped from the left meanwhile only by _seal_queued, which does not
        # run concurrently with this coroutine; so the first len(items) entries are exactly these.
        for _ in items:
            self._spool.popleft()
        self.written += len(items)
        metrics.RECORDS.labels("written").inc(len(items))
        metrics.SPOOL_DEPTH.set(len(self._spool))

    async def _mark_spooled(self) -> None:
        fresh = [item for item in self._spool if not item[3]]
        for item in fresh:
            item[3] = True
        metrics.RECORDS.labels("spooled").inc(len(fresh))
        # The file is bounded like the memory spool, so a long outage cannot fill the pod's volume.
        if self._disk is not None and fresh and self._disk.size < self.max_spool:
            try:
                await asyncio.to_thread(self._disk.append, [SpooledRecord(i[0], i[1], i[2]) for i in fresh])
            except Exception as exc:  # disk full or read-only: the memory spool still holds them
                log.warning("audit: spool file %s not written (%s)", self._disk.path, type(exc).__name__)

    async def _after_write(self) -> None:
        if self._disk is not None and not self._spool and self._disk.size:
            await asyncio.to_thread(self._disk.clear)

    async def _replay(self, orphan: OrphanSpool) -> None:
        chain, records = await asyncio.to_thread(orphan.read)
        if chain is None:
            await asyncio.to_thread(orphan.done)
            return
        head = await self.redis.hget(self.heads, chain)
        written_seq = parse_head(head)[0] if head else 0
        todo = [r for r in records if r.seq > written_seq]
        for start in range(0, len(todo), self.batch):
            part = todo[start : start + self.batch]
            await self._append(chain, [(r.seq, r.hash, r.payload) for r in part])
            self.recovered += len(part)
            metrics.RECORDS.labels("recovered").inc(len(part))
        log.warning("audit: recovered %d records of chain %s from %s", len(todo), chain, orphan.path.name)
        await asyncio.to_thread(orphan.done)

    async def _replay_orphans(self) -> None:
        """Write what dead writers left in the spool directory; raises (to retry later) while Redis is down."""
        own = self._disk.path if self._disk is not None else None
        orphans = await asyncio.to_thread(find_orphans, self.spool_dir, own)
        try:
            while orphans:
                await self._replay(orphans[0])
                orphans.pop(0)
        finally:
            for orphan in orphans:
                orphan.release()
        self._orphans_pending = False

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                if not self._queue and not self._spool and not self._orphans_pending:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                self._seal_queued()
                if self.redis is None:
                    raise ConnectionError("no Redis configured")
                if self._orphans_pending:
                    await self._replay_orphans()
                if not self._spool:
                    continue
                await self._write_batch()
                await self._after_write()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._mark_spooled()
                if backoff >= self.max_backoff / 2:
                    log.warning(
                        "audit: Redis write failed (%s); %d records spooled", type(exc).__name__, len(self._spool)
                    )
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def export_lag(self, now: float | None = None) -> float | None:
        """Seconds since the oldest record past the exported mark was written; None when export is off."""
        mark = await self.redis.get(self.exported)
        if mark is None:
            return None
        mark = mark.decode() if isinstance(mark, bytes) else str(mark)
        first = await self.redis.xrange(self.stream, min=f"({mark}" if mark != "0-0" else "-", count=1)
        if not first:
            return 0.0
        sid = first[0][0].decode() if isinstance(first[0][0], bytes) else str(first[0][0])
        return max(0.0, (time.time() if now is None else now) - int(sid.split("-", 1)[0]) / 1000.0)

    async def _watch_export(self, every: float = EXPORT_LAG_SECONDS) -> None:
        while True:
            try:
                lag = await self.export_lag()
                metrics.EXPORT_LAG.set(lag or 0.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down: the spool metrics say so; keep the last value
                # redis-py may turn a cancellation inside a command into a connection error: still stop.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
            await asyncio.sleep(every)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout (Redis down)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.pending()

    async def close(self, timeout: float = 5.0) -> None:
        await self.unauthenticated.close()  # the open window's summary goes out with the rest
        if self._lag_task is not None:
            self._lag_task.cancel()
            # Bounded: a metric must never hold up the records' final flush.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._lag_task), timeout=2)
            self._lag_task = None
        if self._task is None:
            return
        await self.flush(timeout)
        self._closing = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("audit writer task failed")
        if self.pending():
            log.warning("audit: %d records not written at close", self.pending())
            self._seal_queued()
            await self._mark_spooled()  # on disk for the next writer, when there is a spool directory
        if self._disk is not None:
            await asyncio.to_thread(self._disk.close)
        self._task = None
