"""Status writes sent in the background, so a re-render does not wait for thousands of them.

A first render of 10,000 Tenants decides 10,000 status writes; sent inline, they held the Gateway's reconcile for a
minute while new Tenants waited for their keys to reach the policy. Writes go to one of ``SHARDS`` threads by the
object's uid, so the writes of one object keep their order; a write still queued is replaced by a newer one for the
same object.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from gateway_operator.kube.client import StatusWrite, forget, remember, send_status

log = logging.getLogger("kubegate.operator")
SHARDS = 6


class _Shard:
    def __init__(self, index: int) -> None:
        self.queue: OrderedDict[str, StatusWrite] = OrderedDict()
        self.ready = threading.Condition()
        threading.Thread(target=self._run, name=f"kubegate-status-{index}", daemon=True).start()

    def put(self, key: str, write: StatusWrite) -> None:
        with self.ready:
            self.queue.pop(key, None)
            self.queue[key] = write
            self.ready.notify()

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                _, write = self.queue.popitem(last=False)
            try:
                send_status(write)
            except Exception as exc:  # forgotten: the next reconcile decides the write again
                meta = write.obj.get("metadata") or {}
                forget(meta.get("uid"))
                log.warning("status of %s/%s not written: %s", write.plural, meta.get("name"), type(exc).__name__)


_shards: list[_Shard] = []
_lock = threading.Lock()


def _shard(key: str) -> _Shard:
    with _lock:
        if not _shards:
            _shards.extend(_Shard(i) for i in range(SHARDS))
    return _shards[hash(key) % SHARDS]


def _key(write: StatusWrite) -> str:
    meta = write.obj.get("metadata") or {}
    return meta.get("uid") or f"{write.ns}/{write.plural}/{meta.get('name')}"


def send_later(writes: list[StatusWrite]) -> None:
    for write in writes:
        key = _key(write)
        # Remembered now: a re-render before it is sent (its index entry still without it) decides no second write.
        remember((write.obj.get("metadata") or {}).get("uid"), write.marker)
        _shard(key).put(key, write)
