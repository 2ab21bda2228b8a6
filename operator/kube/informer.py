"""List, then watch, one kind of custom object (in one namespace, or the whole cluster) in a thread of its own.

kopf handles LLMGateways; ModelRoutes, Tenants and Budgets come through here instead. At 10,000 Tenants and
10,000 Budgets kopf's per-event machinery (a per-object worker, memory, diff base, cause detection, handler
invocation and a log line for each of ~40,000 events, creations and our own status writes alike) took about half
of the operator's CPU and a few KiB per object; here an event costs its JSON decoding and the caller's ``on_event``.

``on_event(type, body)`` runs in this thread: ``type`` is None for an object found by a (re)list, else the watch
event's type (ADDED, MODIFIED, DELETED). After each (re)list (first start, an expired resourceVersion, a lost
connection) ``on_listed(keys)`` gets the (namespace, name) of every object listed: whatever the caller holds beyond
them was deleted while nobody watched. The informer itself keeps no objects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from gateway_operator.kube.client import api_client
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("kubegate.operator")
PAGE = 500
# The server ends each watch after this long (a new one starts from the last resourceVersion): a stopped informer's
# thread is gone within it.
WATCH_SECONDS = 60
RETRY_SECONDS = (1, 2, 5, 10)

OnEvent = Callable[[str | None, dict[str, Any]], None]
OnListed = Callable[[set[tuple[str, str]]], None]


class Informer:
    def __init__(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        on_event: OnEvent,
        on_listed: OnListed,
        api: Callable[[], client.ApiClient] = api_client,
    ) -> None:
        self.group, self.version, self.plural, self.namespace = group, version, plural, namespace
        self._on_event, self._on_listed, self._api = on_event, on_listed, api
        self._stopped = threading.Event()
        self._response: Any = None  # the request in flight, shut down by stop() so the thread ends now
        self.listed = threading.Event()  # set once the first list has been reported
        scope = namespace or "all namespaces"
        self._thread = threading.Thread(target=self._run, name=f"kubegate-watch-{plural}-{scope}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already closed or released
                response.shutdown()  # unblocks a read in progress: the thread sees the stop at once

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end: a daemon thread still inside a request or a log call when the interpreter
        exits can abort the process (SIGABRT instead of exit 0 on SIGTERM). From the informer's own thread (its
        callback stops every informer once the operator's loop is closed) there is nothing to wait for."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _list_call(self, api: client.CustomObjectsApi) -> Callable[..., Any]:
        if self.namespace is None:
            return lambda **kw: api.list_cluster_custom_object(self.group, self.version, self.plural, **kw)
        return lambda **kw: api.list_namespaced_custom_object(
            self.group, self.version, self.namespace, self.plural, **kw
        )

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                api = client.CustomObjectsApi(self._api())
                version = self._relist(api)
                self.listed.set()
                failures = 0
                self._follow(api, version)
            except Exception as exc:  # a dropped connection, a timeout, a refusal: list again after a pause
                if self._stopped.is_set():
                    return  # nothing to report: the request was cut by stop()
                if isinstance(exc, client.ApiException) and exc.status == 410:
                    continue  # the resourceVersion expired: list again
                if isinstance(exc, client.ApiException) and exc.status == 404 and not self.listed.is_set():
                    # The kind's CRD is not installed (an upgrade whose CRDs were not applied): nothing of it exists.
                    # Reported as an empty list so reconciles of the other kinds go on; listed again after a pause.
                    log.warning("%s: no such resource (apply the CRDs of this version); retrying", self.plural)
                    self._on_listed(set())
                    self.listed.set()
                failures += 1
                why = f"HTTP {exc.status}" if isinstance(exc, client.ApiException) else type(exc).__name__
                log.warning("watching %s failed: %s", self.plural, why)
            if failures:
                self._stopped.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])

    def _relist(self, api: client.CustomObjectsApi) -> str:
        """Report every object (type None), then the keys listed; the list's resourceVersion."""
        listing = self._list_call(api)
        seen: set[tuple[str, str]] = set()
        token = None
        while True:
            # Raw JSON: the client's deserialisation of 500 objects per page is pure overhead for plain dicts.
            response = self._response = listing(
                limit=PAGE, _continue=token, _preload_content=False, _request_timeout=(10, WATCH_SECONDS)
            )
            try:
                page = json.loads(response.data)
            finally:
                self._response = None
            for item in page.get("items") or []:
                item.setdefault("apiVersion", page.get("apiVersion"))
                item.setdefault("kind", (page.get("kind") or "").removesuffix("List") or None)
                key = self._report(None, item)
                seen.add(key)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                version = (page.get("metadata") or {}).get("resourceVersion") or ""
                break
        self._on_listed(seen)
        return version

    def _follow(self, api: client.CustomObjectsApi, version: str) -> None:
        """Watch from ``version`` until stopped; each watch the server ends resumes from the last version seen."""
        while not self._stopped.is_set():
            response = self._list_call(api)(
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=(10, WATCH_SECONDS + 30),
                _preload_content=False,
            )
            self._response = response
            try:
                for line in iter_resp_lines(response):
                    if self._stopped.is_set():
                        return
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":  # 410 Gone: the version expired, the caller lists again
                        raise client.ApiException(status=obj.get("code") or 500, reason=obj.get("message"))
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._report(kind, obj)
            finally:
                self._response = None
                response.close()
                response.release_conn()

    def _report(self, kind: str | None, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        try:
            self._on_event(kind, obj)
        except Exception:  # one object's handling must not end the watch of all
            log.exception("handling a %s event of %s %s failed", kind or "listed", self.plural, key[1])
        return key
