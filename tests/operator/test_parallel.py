"""``kube.parallel``: results in order across windows, every item run even when one fails, the first failure raised."""

from __future__ import annotations

import threading

import pytest
from gateway_operator.kube import parallel as par


def test_results_keep_their_order_across_windows():
    n = par.WINDOW * 3 + 5
    assert par.parallel(lambda x: x * 2, range(n)) == [x * 2 for x in range(n)]


def test_every_item_runs_and_the_first_failure_is_raised():
    ran: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            ran.append(x)
        if x in (3, par.WINDOW + 1):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 3"):
        par.parallel(fn, range(par.WINDOW * 2))
    assert sorted(ran) == list(range(par.WINDOW * 2))


def test_at_most_a_window_of_work_is_handed_to_the_pool_at_once(monkeypatch):
    submitted, done, most = [0], [0], [0]
    lock = threading.Lock()
    real_submit = par.ThreadPoolExecutor.submit

    def submit(self, fn, *args):
        with lock:
            submitted[0] += 1
            most[0] = max(most[0], submitted[0] - done[0])
        return real_submit(self, fn, *args)

    def work(x: int) -> int:
        with lock:
            done[0] += 1
        return x

    monkeypatch.setattr(par.ThreadPoolExecutor, "submit", submit)
    par.parallel(work, range(par.WINDOW * 10))
    assert most[0] <= par.WINDOW
