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

from gateway_plugins.policy.keys import GatewayKeys

app = typer.Typer(
    name="kubegate",
    help="Kubernetes-native extension pack for LiteLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
audit_app = typer.Typer(
    help="Audit log tools: verify the keyed chain (with --key-file, --checkpoints), export records (--follow).",
    no_args_is_help=True,
)
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


RedisUrl = Annotated[str, typer.Option(help="redis:// URL of the gateway's Redis.")]
GatewayName = Annotated[str, typer.Option(help="Gateway name (stream kubegate:{namespace}:{gateway}:audit).")]
Namespace = Annotated[str, typer.Option(help="Gateway namespace (part of every Redis key).")]
Stream = Annotated[str | None, typer.Option(help="Stream key; overrides --gateway.")]
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
    from gateway_operator.audit_cli import main as audit_main

    try:
        return int(audit_main(argv) or 0)
    except SystemExit as exc:  # argparse inside the audit module
        return exc.code if isinstance(exc.code, int) else 1


@audit_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify(
    ctx: typer.Context,
    redis_url: RedisUrl,
    gateway: GatewayName = "main",
    namespace: Namespace = "default",
    stream: Stream = None,
    allow_trimmed: Annotated[bool, typer.Option(help="Accept chains whose start was trimmed by MAXLEN.")] = False,
) -> int:
    """Verify the hash chain of the audit stream; names the first altered, deleted or reordered record."""
    argv = ["verify", "--redis-url", redis_url, "--gateway", gateway, "--namespace", namespace]
    argv += ["--stream", stream] if stream else []
    return _run_audit(argv + (["--allow-trimmed"] if allow_trimmed else []) + list(ctx.args))


@audit_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def export(
    ctx: typer.Context,
    redis_url: RedisUrl,
    gateway: GatewayName = "main",
    namespace: Namespace = "default",
    stream: Stream = None,
    out: Annotated[str, typer.Option(help="JSON Lines file ('-': stdout).")] = "-",
    since: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
) -> int:
    """Export audit records as JSON Lines, optionally for a time range (both ends inclusive)."""
    argv = ["export", "--redis-url", redis_url, "--gateway", gateway, "--namespace", namespace, "--out", out]
    argv += ["--stream", stream] if stream else []
    for flag, value in (("--since", to_stream_id(since, "--since")), ("--until", to_stream_id(until, "--until"))):
        argv += [flag, value] if value else []
    return _run_audit(argv + list(ctx.args))


def _when(value: str | None, option: str, default: datetime) -> datetime:
    if value is None:
        return default
    ms = to_stream_id(value, option)
    return datetime.fromtimestamp(int(str(ms).split("-")[0]) / 1000, UTC)


def _load_budgets(path: Path) -> list:
    """Budgets from CR YAML (a file, a folder, or `kubectl get budgets -A -o yaml`) as (namespace, policy Budget)."""
    import yaml
    from gateway_operator.crd import models as crd
    from gateway_operator.render.gateway import render_budget
    from pydantic import ValidationError

    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    out = []
    for file in files:
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{file}: {exc}") from None
        for doc in docs:
            for item in (doc or {}).get("items", [doc]) if isinstance(doc, dict) else []:
                if isinstance(item, dict) and item.get("kind") == "Budget":
                    try:
                        budget = crd.Budget.model_validate(item)
                    except ValidationError as exc:
                        raise UserError(f"{file}: invalid Budget: {exc.errors()[0]['msg']}") from None
                    out.append((budget.metadata.namespace, render_budget(budget)))
    return out


@app.command()
def report(
    redis_url: Annotated[str | None, typer.Option(help="Read the audit stream from this Redis.")] = None,
    gateway: GatewayName = "main",
    namespace: Namespace = "default",
    stream: Stream = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="Read a `kubegate audit export` file instead of Redis.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Start (ISO time, UTC if no zone); default: 30 days ago.")] = None,
    until: Annotated[str | None, typer.Option(help="End (ISO time, UTC if no zone); default: now.")] = None,
    budgets: Annotated[
        Path | None, typer.Option(help="Budget CRs (file or folder; `kubectl get budgets -A -o yaml`) to compare.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Write CSV here (plus -budgets/-refusals/-pii/-regions files).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write one self-contained HTML report with charts here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No terminal tables.")] = False,
) -> int:
    """Spend, tokens, budgets, refusals, PII and residency for a time range, from the audit stream."""
    from datetime import timedelta

    from gateway_operator.report import build, render, source
    from rich.console import Console

    if (redis_url is None) == (input is None):
        raise UserError("give exactly one of --redis-url (the audit stream) and --input (an export file)")
    now = datetime.now(UTC)
    start = _when(since, "--since", now - timedelta(days=30))
    end = _when(until, "--until", now)
    if start > end:
        raise UserError(f"--since {start.isoformat()} is after --until {end.isoformat()}")
    budget_list = _load_budgets(budgets) if budgets else []
    try:
        if input is not None:
            records, integrity = source.from_file(input, start, end)
        else:
            stream = stream or GatewayKeys(namespace, gateway).audit_stream
            records, integrity = source.from_redis(redis_url, stream, start, end)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # redis errors: one line, the URL is not repeated (it may hold a password)
        if type(exc).__module__.startswith("redis"):
            raise UserError(f"Redis at --redis-url: {type(exc).__name__}: {exc}") from None
        raise
    result = build.build_report(records, start, end, integrity, budget_list)
    console = Console(stderr=quiet)
    if not quiet:
        render.to_terminal(result, console)
    if csv is not None:
        for path in render.to_csv(result, csv):
            typer.echo(f"wrote {path}", err=True)
    if html is not None:
        html.write_text(render.to_html(result), encoding="utf-8")
        typer.echo(f"wrote {html}", err=True)
    return 0 if integrity.startswith("OK") else 1


@app.command()
def usage(redis_url: RedisUrl, gateway: GatewayName = "main", namespace: Namespace = "default") -> int:
    """Each tenant's spend this period, budget state and remaining amount, read from the gateway's Redis."""
    from gateway_operator.report import usage as usage_mod
    from rich.console import Console

    try:
        lines = usage_mod.read_usage(redis_url, gateway, namespace)
    except usage_mod.NoPolicy as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            raise UserError(f"Redis at --redis-url: {type(exc).__name__}: {exc}") from None
        raise
    usage_mod.to_terminal(lines, gateway, Console(width=160))
    return 0


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
