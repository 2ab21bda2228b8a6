"""``kubegate`` command line (typer): ``dev``, ``render``, ``audit``, ``report``, ``usage``, ``operator``.

kopf is imported only by ``kubegate operator``; the proxy image never needs it. Every command imports its
implementation lazily so ``kubegate --help`` and shell completion stay fast.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    name="kubegate",
    help="Kubernetes-native extension pack for LiteLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
audit_app = typer.Typer(help="Audit log tools: verify the hash chain, export records.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


class UserError(typer.TyperException):
    """A problem the user can fix: printed without a traceback, exit 1."""


def version() -> str:
    try:
        return metadata.version("kubegate")
    except metadata.PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kubegate {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Kubernetes-native extension pack for LiteLLM."""


@app.command()
def dev(
    dir: Annotated[Path, typer.Option(help="Folder of CR YAML files.")] = Path("examples/quickstart"),
    gateway: Annotated[str | None, typer.Option(help="Gateway to run when the folder has several.")] = None,
    port: Annotated[int, typer.Option(help="Proxy port on 127.0.0.1.")] = 4000,
    echo_port: Annotated[int, typer.Option(help="Echo upstream port (used without OPENAI_API_KEY).")] = 4099,
    redis_port: Annotated[int, typer.Option(help="Local Redis port (an existing Redis there is reused).")] = 6380,
    redis_url: Annotated[str | None, typer.Option(help="Use this Redis instead of starting one.")] = None,
    state_dir: Annotated[Path, typer.Option(help="Keys, logs and Redis data.")] = Path(".kubegate"),
) -> int:
    """Run a local gateway (Redis + LiteLLM proxy with kubegate) from CR files."""
    from gateway_operator import dev as devmod

    opts = devmod.DevOptions(dir, gateway, port, echo_port, redis_port, redis_url, state_dir)
    try:
        return devmod.run(opts)
    except devmod.DevError as exc:
        raise UserError(str(exc)) from None


@app.command()
def render(
    dir: Annotated[Path, typer.Option(help="Folder of CR YAML files.")] = Path("examples/quickstart"),
    gateway: Annotated[str | None, typer.Option(help="Gateway to render (default: the first).")] = None,
) -> int:
    """Print the LiteLLM config and policy rendered from CR files."""
    from gateway_operator import dev as devmod

    try:
        sys.stdout.write(devmod.render(dir, gateway))
    except devmod.DevError as exc:
        raise UserError(str(exc)) from None
    return 0


_STREAM_ID = re.compile(r"^\d+(-\d+)?$")


def to_stream_id(value: str | None, option: str) -> str | None:
    """A stream id or epoch ms as given, or an ISO-8601 time (UTC when no zone) as epoch milliseconds."""
    if value is None or _STREAM_ID.match(value):
        return value
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO time (2026-12-01, 2026-12-01T10:00:00Z), epoch ms or stream id",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return str(int(when.timestamp() * 1000))


def _run_audit(argv: list[str]) -> int:
    from gateway_plugins.audit.cli import main as audit_main

    try:
        return int(audit_main(argv) or 0)
    except SystemExit as exc:  # argparse inside the audit module
        return exc.code if isinstance(exc.code, int) else 1


RedisUrl = Annotated[str, typer.Option(help="redis:// URL of the gateway's Redis.")]
GatewayName = Annotated[str, typer.Option(help="Gateway name (stream kubegate:{gateway}:audit).")]
Stream = Annotated[str | None, typer.Option(help="Stream key; overrides --gateway.")]


@audit_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify(
    ctx: typer.Context,
    redis_url: RedisUrl,
    gateway: GatewayName = "main",
    stream: Stream = None,
    allow_trimmed: Annotated[bool, typer.Option(help="Accept chains whose start was trimmed by MAXLEN.")] = False,
) -> int:
    """Verify the hash chain of the audit stream; names the first altered, deleted or reordered record."""
    argv = ["verify", "--redis-url", redis_url, "--gateway", gateway, *(["--stream", stream] if stream else [])]
    return _run_audit(argv + (["--allow-trimmed"] if allow_trimmed else []) + list(ctx.args))


@audit_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def export(
    ctx: typer.Context,
    redis_url: RedisUrl,
    gateway: GatewayName = "main",
    stream: Stream = None,
    out: Annotated[str, typer.Option(help="JSON Lines file ('-': stdout).")] = "-",
    since: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
) -> int:
    """Export audit records as JSON Lines, optionally for a time range (both ends inclusive)."""
    argv = ["export", "--redis-url", redis_url, "--gateway", gateway, "--out", out]
    argv += ["--stream", stream] if stream else []
    for flag, value in (("--since", to_stream_id(since, "--since")), ("--until", to_stream_id(until, "--until"))):
        argv += [flag, value] if value else []
    return _run_audit(argv + list(ctx.args))


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def operator(ctx: typer.Context) -> NoReturn:
    """Run the kopf operator (all arguments go to `kopf run`)."""
    # kopf runs as its own CLI so its options (--namespace, --all-namespaces, --standalone) pass through. exec, not
    # a child: as a container's PID 1 a waiting wrapper ignores SIGTERM (PID 1 has no default signal actions), kopf
    # never got it, and every pod stop waited out the grace period before SIGKILL.
    args = [sys.executable, "-m", "kopf", "run", "-m", "gateway_operator.handlers", *ctx.args]
    # Never the cwd on sys.path: from a checkout, ./operator would shadow the stdlib `operator` module.
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)


def _error_line(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    line = f"kubegate: error: {exc.format_message()}"
    if ctx is not None:  # a usage error: point at the help of the command that was being parsed
        line += f" (see '{ctx.command_path} --help')"
    return line


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code. Usage and user errors are one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="kubegate", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `kubegate` or `kubegate audit` alone: the help
            typer.echo(exc.format_message())
            return 2
        typer.echo(_error_line(exc), err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("kubegate: aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
