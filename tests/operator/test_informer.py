"""The informers that feed the operator ModelRoutes, Tenants and Budgets (``kube.informer``, ``reconcile.watched``),
against the real API server: the first list, every watch event after it, and deletions that happened while nobody
watched (reported by the next list), with the store a reconcile snapshots always matching the API server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from gateway_operator.crd.models import GROUP, VERSION
from gateway_operator.kube.informer import Informer
from gateway_operator.reconcile import seen
from gateway_operator.reconcile.watched import Watched, named_namespaces
from kubernetes import client

from tests.harness.procs import wait_until
from tests.operator.test_crd import _install_crds


class Recording(Watched):
    """Records what each change would ask of the operator's loop instead of re-rendering a Gateway."""

    def __init__(self, *args, **kwargs) -> None:
        self.dispatched: list[tuple[str, str | None, str]] = []
        super().__init__(*args, **kwargs)

    def _dispatch(self, plural: str, kind: str | None, raw: dict) -> None:
        self.dispatched.append((plural, kind, raw["metadata"]["name"]))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _tenant(name: str, **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"gateway": "main", "allowedModels": ["*"], **spec},
    }


def _names(store: seen.Store, ns: str) -> dict[str, list[str]]:
    objects = store.snapshot(ns)
    return {
        "tenants": sorted(e.name for e in objects.tenants),
        "budgets": sorted(e.name for e in objects.budgets),
        "modelroutes": sorted(e.name for e in objects.routes),
    }


def _start(loop, ns: str, control_plane, store: seen.Store | None = None) -> Recording:
    watched = Recording(None, loop, clusterwide=False, namespaces=[ns], store=store, api=control_plane.admin_api_client)
    wait_until(
        lambda: all(i.listed.is_set() for i in watched.ensure(ns)), timeout=30, what="the first list", interval=0.05
    )
    return watched


def test_lists_follows_and_reports_deletions_missed_while_stopped(control_plane, admin_api, namespace, loop):
    _install_crds(admin_api)
    custom = client.CustomObjectsApi(admin_api)

    def create(body: dict, plural: str = "tenants") -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    create(_tenant("a"))
    create(_tenant("b"))
    budget = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Budget", "metadata": {"name": "a-b"}}
    create({**budget, "spec": {"tenant": "a", "limitUSD": "5"}}, "budgets")

    watched = _start(loop, namespace, control_plane)
    try:
        assert _names(watched.store, namespace) == {"tenants": ["a", "b"], "budgets": ["a-b"], "modelroutes": []}
        wait_until(
            lambda: len(watched.dispatched) == 3, timeout=30, what="the listed objects dispatched", interval=0.05
        )
        assert sorted(watched.dispatched) == [("budgets", None, "a-b"), ("tenants", None, "a"), ("tenants", None, "b")]

        # Watch events: a spec change is parsed again, a new object appears, a deleted one leaves the store.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "tenants", "a", {"spec": {"allowedModels": ["gpt-4o"]}}
        )
        create(_tenant("c"))
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "b")
        wait_until(lambda: len(watched.dispatched) == 6, timeout=30, what="three watch events", interval=0.05)
        assert watched.dispatched[3:] == [
            ("tenants", "MODIFIED", "a"),
            ("tenants", "ADDED", "c"),
            ("tenants", "DELETED", "b"),
        ]
        tenants = {e.name: e for e in watched.store.snapshot(namespace).tenants}
        assert sorted(tenants) == ["a", "c"]
        assert tenants["a"].piece.policy.allowed_models == ["gpt-4o"]
        # An object the API server accepts but the operator's model refuses is kept, with its problem, not dropped.
        create(
            {
                **budget,
                "metadata": {"name": "mars"},
                "spec": {"tenant": "a", "limitUSD": "5", "timezone": "Mars/Olympus"},
            },
            "budgets",
        )
        wait_until(
            lambda: "mars" in _names(watched.store, namespace)["budgets"],
            timeout=30,
            what="the invalid Budget",
            interval=0.05,
        )
        entry = next(e for e in watched.store.snapshot(namespace).budgets if e.name == "mars")
        assert entry.piece is None and entry.problem is not None and "spec.timezone" in entry.problem.message
    finally:
        # Stopped mid-watch, each thread ends now (its open watch is shut down), not when the server ends the watch:
        # a thread still in a request when the operator exits can abort the process.
        watched.stop(join_timeout=10)
    assert not any(i.alive for i in watched.ensure(namespace))

    # While nobody watches: one deleted, one created. The next list reports both, and the store matches again.
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tenants", "c")
    create(_tenant("d"))
    again = _start(loop, namespace, control_plane, store=watched.store)
    try:
        wait_until(
            lambda: ("tenants", "DELETED", "c") in again.dispatched, timeout=30, what="the relist", interval=0.05
        )
        assert ("tenants", None, "d") in again.dispatched
        assert _names(again.store, namespace) == {"tenants": ["a", "d"], "budgets": ["a-b", "mars"], "modelroutes": []}
    finally:
        again.stop()


def test_named_namespaces_are_the_exact_names_of_the_command_line(monkeypatch):
    import click

    command = click.Command("run", params=[click.Option(["-n", "--namespace", "namespaces"], multiple=True)])
    ctx = click.Context(command)
    ctx.params = {"namespaces": ("team-a", "team-*", "!kube-system", "x,y", "team-b")}
    monkeypatch.delenv("KOPF_RUN_NAMESPACE", raising=False)
    with ctx:
        assert named_namespaces() == {"team-a", "team-b"}
    assert named_namespaces() == set()  # no kopf command line (an embedded run): Gateways discover namespaces


def test_an_informer_stopped_from_its_own_thread_does_not_join_itself():
    # The path taken when an event arrives after the operator's loop closed: the callback stops every informer.
    informer = Informer("kubegate.dev", "v1alpha1", "tenants", "ns", lambda *_: None, lambda _: None)
    errors = []

    def own_thread() -> None:
        try:
            informer.join(1.0)
        except RuntimeError as exc:
            errors.append(exc)

    informer._thread = threading.Thread(target=own_thread)
    informer._thread.start()
    informer._thread.join(5)
    assert errors == []


def test_a_kind_whose_crd_is_missing_counts_as_listed_and_empty(admin_api):
    """An upgrade that did not apply a new kind's CRD must not stall every reconcile waiting for its first list."""
    listed: list[set] = []
    informer = Informer(GROUP, VERSION, "nosuchkinds", "default", lambda *_: None, listed.append, lambda: admin_api)
    informer.start()
    try:
        assert informer.listed.wait(10)
        assert listed == [set()]
    finally:
        informer.stop()
        informer.join(5)
