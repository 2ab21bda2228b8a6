"""``kubegate`` command line: ``dev``, ``render``, ``audit verify|export``, ``operator``.

kopf is imported only by ``kubegate operator``; the proxy image never needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


def _audit(argv: list[str]) -> int:
    from gateway_plugins.audit.cli import main as audit_main

    return int(audit_main(argv) or 0)


def _operator(argv: list[str]) -> NoReturn:
    # kopf runs as its own CLI so its options (--namespace, --all-namespaces, --standalone) pass through. exec, not
    # a child: as a container's PID 1 a waiting wrapper ignores SIGTERM (PID 1 has no default signal actions), kopf
    # never got it, and every pod stop waited out the grace period before SIGKILL.
    args = [sys.executable, "-m", "kopf", "run", "-m", "gateway_operator.handlers", *argv]
    # Never the cwd on sys.path: from a checkout, ./operator would shadow the stdlib `operator` module.
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)


def _dev(argv: list[str]) -> int:
    from gateway_operator.dev import main as dev_main

    return dev_main(argv)


def _render(argv: list[str]) -> int:
    from gateway_operator.dev import render_main

    return render_main(argv)


COMMANDS = {
    "dev": (_dev, "run a local gateway (Redis + LiteLLM proxy with kubegate) from example CRs"),
    "render": (_render, "print the LiteLLM config and policy rendered from CR files"),
    "audit": (_audit, "audit log tools: verify the keyed chain (with its checkpoints), export records (--follow)"),
    "operator": (_operator, "run the kopf operator (arguments go to `kopf run`)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="kubegate", description="Kubernetes-native extension pack for LiteLLM.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    handler, _ = COMMANDS[argv[0]]
    return handler(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
