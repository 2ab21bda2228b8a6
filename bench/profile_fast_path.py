"""Where a proxy's CPU goes under load, per function: py-spy on one variant of ``bench/bench_proxy.py`` while wrk
drives it.

Not a test. Starts the variant (``fast``: the shipped gateway with the fast path; ``router``: the bare Router floor)
against the echo upstream, warms it up, records the proxy process with py-spy (``--gil``: only samples holding the
GIL, i.e. Python work, not time waiting on the network) for ``--seconds`` and prints, as shares of all samples:
kubegate's own code (frames under ``gateway_plugins/``, inclusive of what it calls), the top functions by own
time, and the top kubegate functions by inclusive time. Keep runs short on a shared machine.

Usage: .venv/bin/python bench/profile_fast_path.py [--variant fast|router] [--route chat|responses|messages|embeddings]
       [--seconds 15] [--py-spy PATH]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_proxy import KEY, ROUTES, config, policy  # noqa: E402
from bench.lib import wrk as wrklib  # noqa: E402
from bench.lib.cpu import group_cpu_seconds  # noqa: E402
from bench.lib.router_floor import RouterFloor  # noqa: E402
from gateway_plugins.policy import proxy_defaults  # noqa: E402
from tests.harness.echo import EchoServer  # noqa: E402
from tests.harness.proxy import ProxyServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

OURS = "gateway_plugins/"
ROUTER_CALL = "_call_router (gateway_plugins/fast_path.py"


def _short_names() -> frozenset[str]:
    """kubegate's file names py-spy may show without their directory (it shortens paths), when no installed
    package has a file of that name."""
    import sysconfig

    ours = {p.name for p in (REPO / "gateway_plugins").rglob("*.py")}
    theirs = {p.name for p in Path(sysconfig.get_paths()["purelib"]).rglob("*.py") if p.name in ours}
    return frozenset(ours - theirs)


def _is_ours(frame: str, short: frozenset[str]) -> bool:
    where = frame.rpartition(" (")[2].rstrip(")")
    return OURS in where or where in short


def _read(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _function(frame: str) -> str:
    # "name (path/file.py:123)" -> "name (path/file.py)": one entry per function, not per line.
    head, _, where = frame.rpartition(" (")
    return f"{head} ({where.rsplit(':', 1)[0]})" if head else frame


def summarise(stacks: list[tuple[list[str], int]], cpu_ms: float, top: int = 20) -> None:
    short = _short_names()
    """Each sample goes to the innermost kubegate function on its stack: ``_call_router`` there means the Router
    call (LiteLLM's, with the callbacks it runs); no kubegate frame means LiteLLM's or the server's own work."""
    total = sum(n for _, n in stacks) or 1
    own: collections.Counter[str] = collections.Counter()
    innermost: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        frames = [_function(f) for f in frames]
        own[frames[-1]] += n
        mine = [f for f in frames if _is_ours(f, short)]
        if not mine:
            buckets["outside kubegate (server, LiteLLM callbacks and logging run outside a request)"] += n
        elif mine[-1].startswith(ROUTER_CALL):
            buckets["the Router call (fast_path._call_router)"] += n
        else:
            buckets["kubegate's own code and what it calls"] += n
            innermost[mine[-1]] += n

    def ms(n: int) -> str:
        return f"{100 * n / total:5.1f}%  {cpu_ms * n / total:5.2f} ms/request"

    print(f"{total} samples (GIL held), {cpu_ms:.2f} ms proxy CPU per request")
    for name, n in buckets.most_common():
        print(f"  {ms(n)}  {name}")
    print("\nkubegate functions (innermost kubegate frame, what they call included):")
    for f, n in innermost.most_common(top):
        print(f"  {ms(n)}  {f}")
    print("\ntop functions by own time:")
    for f, n in own.most_common(top):
        print(f"  {ms(n)}  {f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("fast", "router"), default="fast")
    parser.add_argument("--route", choices=sorted(ROUTES), default="chat")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    path, body = ROUTES[args.route]
    wrk = wrklib.ensure_wrk()
    redis = RedisServer().start()
    echo = EchoServer().start()
    if args.variant == "router":
        proxy = RouterFloor(config(echo), env=proxy_defaults.ENV)
        script = wrklib.post_script(body, {})
    else:
        env = {**proxy_defaults.ENV, "KUBEGATE_FAST_PATH": "1"}
        proxy = ProxyServer(proxy_defaults.apply_defaults(config(echo)), policy(), redis_url=redis.url, env=env)
        script = wrklib.post_script(body, {"Authorization": f"Bearer {KEY}"})
    raw = Path(tempfile.mkdtemp(prefix="kg-spy-")) / "profile.txt"
    try:
        proxy.start()
        base = [wrk, "-t1", f"-c{args.connections}", "-s", str(script), proxy.base_url + path]
        subprocess.run([*base[:3], "-d3s", *base[3:]], check=True, capture_output=True)
        cpu_before = group_cpu_seconds(proxy.proc.pid)
        load = subprocess.Popen([*base[:3], f"-d{args.seconds}s", *base[3:]], stdout=subprocess.PIPE, text=True)
        try:
            spy = [args.py_spy, "record", "--gil", "--format", "raw", "--rate", "200"]
            spy += ["--duration", str(args.seconds), "--pid", str(proxy.proc.pid), "--output", str(raw)]
            subprocess.run(spy, check=True, capture_output=True)
        finally:
            out, _ = load.communicate()
        cpu = group_cpu_seconds(proxy.proc.pid) - cpu_before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
    finally:
        proxy.stop()
        echo.stop()
        redis.stop()
    print(f"variant {args.variant}, route {path}, {args.seconds} s under wrk -c{args.connections}; raw stacks: {raw}")
    summarise(_read(raw), 1000 * cpu / requests)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONSAFEPATH", "1")
    sys.exit(main())
