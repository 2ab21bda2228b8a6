"""``kubegate`` command line (typer): ``dev``, ``render``, ``audit``, ``report``, ``usage``, ``operator``.

kopf is imported only by ``kubegate operator``; the proxy image never needs it. Every command imports its
implementation lazily so ``kubegate --help`` and shell completion stay fast.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from gateway_operator.devstate import DevState, DevStateError, state_path
from gateway_operator.devstate import read as read_dev_state

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


RedisUrl = Annotated[
    str | None,
    typer.Option(
        help="The gateway's Redis (redis://, rediss://, redis+sentinel://, redis+cluster://: docs/redis.md); "
        "default: the running `kubegate dev`'s (its state file)."
    ),
]
GatewayName = Annotated[
    str | None,
    typer.Option(
        help="Gateway name (stream kubegate:{<namespace>:<gateway>:audit}); default: kubegate dev's, or main."
    ),
]
Namespace = Annotated[
    str | None, typer.Option(help="Gateway namespace (part of every Redis key); default: kubegate dev's, or default.")
]
Stream = Annotated[str | None, typer.Option(help="Stream key; overrides --gateway.")]
PublicKey = Annotated[
    str | None,
    typer.Option(help="The audit log's public key (vkey, status.auditLogPublicKey) or a file with it."),
]
LogCheckpoint = Annotated[
    Path | None,
    typer.Option(help="Signed log checkpoint file (ConfigMap {gateway}-audit-checkpoints, tlog-checkpoint)."),
]
OldCheckpoint = Annotated[
    Path | None, typer.Option(help="An earlier signed checkpoint kept aside: consistency from it is checked.")
]
TlogState = Annotated[
    Path | None,
    typer.Option(help="ConfigMap key tlog-state: where proofs start once the stream's cap trimmed the oldest records."),
]
Witnesses = Annotated[
    list[str] | None,
    typer.Option("--witness", help="With --public-key: a witness's vkey (or a file with it); repeat per witness."),
]
Quorum = Annotated[
    int | None, typer.Option(help="With --witness: valid witness cosignatures required (default: all given).")
]
_STREAM_ID = re.compile(r"^\d+(-\d+)?$")


@dataclass(frozen=True)
class Target:
    """The gateway a command reads: from the flags, else from the running `kubegate dev` (flags still win)."""

    redis_url: str
    gateway: str
    namespace: str
    dev: DevState | None = None

    @property
    def source(self) -> str:
        """Where the Redis URL came from, for messages: never the URL itself, which may hold a password."""
        return "--redis-url" if self.dev is None else f"the `kubegate dev` Redis ({state_path()})"


def resolve_target(redis_url: str | None, gateway: str | None, namespace: str | None) -> Target:
    if redis_url:
        return Target(redis_url, gateway or "main", namespace or "default")
    try:
        state = read_dev_state()
    except DevStateError as exc:
        raise UserError(str(exc)) from None
    return Target(state.redis_url, gateway or state.gateway, namespace or state.namespace, state)


def _redis_failure(exc: Exception, target: Target) -> NoReturn:
    """Redis errors as one line (host and port, never the password); anything else is a bug: re-raised."""
    from gateway_plugins.policy.redis_client import RedisAddressError

    if type(exc).__module__.startswith("redis") or isinstance(exc, RedisAddressError):
        raise UserError(f"Redis at {target.source}: {type(exc).__name__}: {exc}") from None
    raise exc


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


def _run_audit(argv: list[str], target: Target) -> int:
    from gateway_operator.audit_cli import main as audit_main

    try:
        return int(audit_main(argv, redis_source=target.source, prefix="kubegate: ") or 0)
    except SystemExit as exc:  # the audit module's errors (a message) and argparse's (already printed)
        if isinstance(exc.code, str):
            typer.echo(f"kubegate: {exc.code}", err=True)
            return 1
        return exc.code if isinstance(exc.code, int) else 1


def _audit_argv(command: str, target: Target, stream: str | None) -> list[str]:
    argv = [command, "--redis-url", target.redis_url, "--gateway", target.gateway, "--namespace", target.namespace]
    return argv + (["--stream", stream] if stream else [])


@audit_app.command()
def verify(
    redis_url: RedisUrl = None,
    gateway: GatewayName = None,
    namespace: Namespace = None,
    stream: Stream = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="File with the Gateway's audit key (base64; Secret {gateway}-kubegate-audit-key, key audit-key). "
            "Default: kubegate dev's key without --redis-url, else $KUBEGATE_AUDIT_KEY."
        ),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="checkpoints.json of ConfigMap {gateway}-audit-checkpoints: heads kept outside Redis."),
    ] = None,
    allow_trimmed: Annotated[
        bool, typer.Option(help="Accept a chain starting after seq 1 with no trim mark (streams from before them).")
    ] = False,
    allow_empty: Annotated[bool, typer.Option(help="Accept a missing or empty stream.")] = False,
    public_key: PublicKey = None,
    checkpoint: LogCheckpoint = None,
    old_checkpoint: OldCheckpoint = None,
    tlog_state: TlogState = None,
    proof: Annotated[
        Path | None, typer.Option(help="With --public-key: a `kubegate audit prove` output to check (no Redis).")
    ] = None,
    witness: Witnesses = None,
    quorum: Quorum = None,
    segments: Annotated[
        Path | None,
        typer.Option(help="With --public-key: a directory of exported segments (spec.audit.export) to check."),
    ] = None,
) -> int:
    """Verify the hash chain of the audit stream; names the first altered, deleted or reordered record.

    With --public-key (the log's vkey, no audit key): the signed transparency log instead: the records against
    --checkpoint (and --old-checkpoint), or a --proof from `kubegate audit prove` (no Redis); with --witness
    (repeated) and --quorum, that many valid witness cosignatures on the checkpoint are required too."""
    if public_key is not None:
        witnesses = [part for w in witness or [] for part in ("--witness", w)]
        witnesses += ["--quorum", str(quorum)] if quorum is not None else []
        if segments is not None:  # offline: segments carry their checkpoints; no Redis
            return _run_audit(
                ["verify", "--public-key", public_key, *witnesses, "--segments", str(segments)], Target("", "", "")
            )
        return _verify_log(
            public_key,
            proof,
            checkpoint,
            old_checkpoint,
            tlog_state,
            (redis_url, gateway, namespace),
            stream,
            witnesses,
        )
    target = resolve_target(redis_url, gateway, namespace)
    argv = _audit_argv("verify", target, stream)
    if key_file is None and target.dev is not None:
        key_file = Path(target.dev.audit_key_file)
    argv += ["--key-file", str(key_file)] if key_file is not None else []
    argv += ["--checkpoints", str(checkpoints)] if checkpoints is not None else []
    argv += ["--allow-trimmed"] if allow_trimmed else []
    return _run_audit(argv + (["--allow-empty"] if allow_empty else []), target)


def _verify_log(public_key, proof, checkpoint, old_checkpoint, tlog_state, where, stream, witnesses) -> int:
    argv = ["verify", "--public-key", public_key, *witnesses]
    if proof is not None:  # offline: the proof carries its checkpoint; no Redis
        argv += ["--proof", str(proof)] + (["--old-checkpoint", str(old_checkpoint)] if old_checkpoint else [])
        return _run_audit(argv, Target("", "", ""))
    target = resolve_target(*where)
    argv = [*_audit_argv("verify", target, stream), *argv[1:], *_log_files(checkpoint, old_checkpoint, tlog_state)]
    return _run_audit(argv, target)


def _log_files(checkpoint: Path | None, old_checkpoint: Path | None, tlog_state: Path | None) -> list[str]:
    pairs = (("--checkpoint", checkpoint), ("--old-checkpoint", old_checkpoint), ("--tlog-state", tlog_state))
    return [part for flag, value in pairs if value is not None for part in (flag, str(value))]


@audit_app.command()
def export(
    redis_url: RedisUrl = None,
    gateway: GatewayName = None,
    namespace: Namespace = None,
    stream: Stream = None,
    out: Annotated[str, typer.Option(help="JSON Lines file ('-': stdout).")] = "-",
    since: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone), epoch ms or stream id.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            help="Keep appending records as they arrive (beside the proxies, so records reach the file before the "
            "stream cap trims them); with --out, resumes after the last stream id in the file."
        ),
    ] = False,
    poll_seconds: Annotated[float, typer.Option(help="With --follow: seconds between reads of the stream.")] = 1.0,
) -> int:
    """Export audit records as JSON Lines, optionally for a time range (both ends inclusive)."""
    target = resolve_target(redis_url, gateway, namespace)
    argv = [*_audit_argv("export", target, stream), "--out", out]
    for flag, value in (("--since", to_stream_id(since, "--since")), ("--until", to_stream_id(until, "--until"))):
        argv += [flag, value] if value else []
    argv += ["--follow", "--poll-seconds", str(poll_seconds)] if follow else []
    return _run_audit(argv, target)


@audit_app.command()
def prove(
    request_id: Annotated[str, typer.Argument(help="The request id (response header x-kubegate-request-id).")],
    checkpoint: Annotated[
        Path, typer.Option(help="Signed log checkpoint file (ConfigMap {gateway}-audit-checkpoints, tlog-checkpoint).")
    ],
    redis_url: RedisUrl = None,
    gateway: GatewayName = None,
    namespace: Namespace = None,
    stream: Stream = None,
    public_key: PublicKey = None,
    old_checkpoint: OldCheckpoint = None,
    tlog_state: TlogState = None,
) -> int:
    """Inclusion proof (JSON) of one request's audit record against the log's signed checkpoint; with
    --old-checkpoint also the consistency proof from it. Check it with `kubegate audit verify --public-key --proof`."""
    target = resolve_target(redis_url, gateway, namespace)
    argv = [*_audit_argv("prove", target, stream), request_id, *_log_files(checkpoint, old_checkpoint, tlog_state)]
    return _run_audit(argv + (["--public-key", public_key] if public_key else []), target)


@audit_app.command()
def consistency(
    checkpoint: LogCheckpoint,
    old_size: Annotated[int, typer.Option(help="The tree size the witness last cosigned.")],
    redis_url: RedisUrl = None,
    gateway: GatewayName = None,
    namespace: Namespace = None,
    stream: Stream = None,
    tlog_state: TlogState = None,
) -> int:
    """Consistency proof (JSON) from an older tree size to --checkpoint: what `kubegate audit witness` checks."""
    if checkpoint is None:
        raise UserError("consistency needs --checkpoint")
    target = resolve_target(redis_url, gateway, namespace)
    argv = [*_audit_argv("consistency", target, stream), "--old-size", str(old_size)]
    return _run_audit(argv + _log_files(checkpoint, None, tlog_state), target)


@audit_app.command("fetch-s3")
def fetch_s3(
    bucket: Annotated[str, typer.Option(help="The bucket of spec.audit.export.s3.")],
    prefix: Annotated[str, typer.Option(help="The Gateway's key prefix: <spec prefix><namespace>/<gateway>/.")],
    out: Annotated[Path, typer.Option(help="Directory to write the segments to (created).")],
    endpoint: Annotated[str | None, typer.Option(help="S3 endpoint URL; default: AWS's for --region.")] = None,
    region: Annotated[str, typer.Option(help="Region the requests are signed for.")] = "us-east-1",
    path_style: Annotated[bool, typer.Option(help="Address the bucket as <endpoint>/<bucket>.")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="PEM CA bundle for a private CA.")] = None,
) -> int:
    """Fetch a Gateway's exported audit segments from its bucket: of each key, the first version (the one the
    operator wrote and locked; later versions and delete markers are reported, not used). Credentials come from the
    AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or profile. Then check them with the public key only:
    `kubegate audit verify --public-key <vkey> --segments <out>`."""
    from gateway_operator.reconcile.audits3 import fetch_segments, reader

    if prefix and not prefix.endswith("/"):
        raise UserError(f"--prefix must end with '/' (<spec prefix><namespace>/<gateway>/), got {prefix!r}")
    try:
        s3 = reader(endpoint, region, path_style, str(ca_file) if ca_file else None)
        count, notes = fetch_segments(s3, bucket, prefix, out)
    except Exception as exc:  # botocore's errors: name the S3 error code, never the request's credentials
        from gateway_operator.reconcile.auditexport import describe

        raise UserError(f"fetching s3://{bucket}/{prefix} failed: {describe(exc)}") from None
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if count == 0:
        raise UserError(f"no segment (seg-*.jsonl) under s3://{bucket}/{prefix}")
    print(f"fetched {count} segments to {out}")
    return 0


@audit_app.command("witness")
def witness_cmd(
    note: Annotated[Path, typer.Argument(help="The signed checkpoint (cosignatures already on it are kept).")],
    log_key: Annotated[str, typer.Option(help="The log's vkey (or a file): only its checkpoints are cosigned.")],
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example.com/w1.")],
    key_file: Annotated[Path, typer.Option(help="The witness's Ed25519 private key (base64), from witness-keygen.")],
    state_file: Annotated[Path, typer.Option(help="The witness's state: the last size and root cosigned per log.")],
    proof: Annotated[
        Path | None, typer.Option(help="`kubegate audit consistency` output from the size this witness last saw.")
    ] = None,
) -> int:
    """Cosign a checkpoint (C2SP tlog-cosignature) once it is consistent with the last one this witness cosigned;
    prints the checkpoint with the cosignature appended. The first checkpoint of a log is taken on first use."""
    argv = ["witness", str(note), "--log-key", log_key, "--name", name, "--key-file", str(key_file)]
    argv += ["--state-file", str(state_file)] + (["--proof", str(proof)] if proof else [])
    return _run_audit(argv, Target("", "", ""))


@audit_app.command("witness-keygen")
def witness_keygen(
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example.com/w1.")],
    key_file: Annotated[Path, typer.Option(help="File to create (mode 0600) with the private key.")],
) -> int:
    """A new witness key: the private key to --key-file, the vkey (give it to verifiers) on stdout."""
    return _run_audit(["witness-keygen", "--name", name, "--key-file", str(key_file)], Target("", "", ""))


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
    redis_url: Annotated[
        str | None,
        typer.Option(help="Read the audit stream from this Redis; default: the running `kubegate dev`'s."),
    ] = None,
    gateway: GatewayName = None,
    namespace: Namespace = None,
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

    if redis_url is not None and input is not None:
        raise UserError("give one of --redis-url (the audit stream) and --input (an export file), not both")
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
            target = resolve_target(redis_url, gateway, namespace)
            key = _dev_audit_key(target)
            stream = stream or GatewayKeys(target.namespace, target.gateway).audit_stream
            try:
                records, integrity = source.from_redis(target.redis_url, stream, start, end, key=key)
            except Exception as exc:
                _redis_failure(exc, target)
    except OSError as exc:  # only --input is a file read here
        raise UserError(f"--input {exc.filename or input}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    result = build.build_report(records, start, end, integrity, budget_list)
    console = Console(stderr=quiet)
    if not quiet:
        render.to_terminal(result, console)
    if csv is not None:
        try:
            written = render.to_csv(result, csv)
        except OSError as exc:
            raise UserError(f"--csv {exc.filename or csv}: {exc.strerror}") from None
        for path in written:
            typer.echo(f"wrote {path}", err=True)
    if html is not None:
        try:
            html.write_text(render.to_html(result), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--html {html}: {exc.strerror}") from None
        typer.echo(f"wrote {html}", err=True)
    return 0 if integrity.startswith("OK") else 1


@app.command()
def usage(redis_url: RedisUrl = None, gateway: GatewayName = None, namespace: Namespace = None) -> int:
    """Each tenant's spend this period, budget state and remaining amount, read from the gateway's Redis."""
    from gateway_operator.report import usage as usage_mod
    from rich.console import Console

    target = resolve_target(redis_url, gateway, namespace)
    public_key = target.dev.policy_public_key if target.dev is not None else None
    try:
        lines = usage_mod.read_usage(target.redis_url, target.gateway, target.namespace, public_key=public_key)
        volume = usage_mod.read_volume(target.redis_url, target.gateway, target.namespace, public_key=public_key)
    except usage_mod.NoPolicy as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        _redis_failure(exc, target)
    usage_mod.to_terminal(lines, f"{target.namespace}/{target.gateway}", Console(), volume)
    return 0


def _dev_audit_key(target: Target) -> bytes | None:
    """kubegate dev's audit key when its Redis is the one read (None: $KUBEGATE_AUDIT_KEY, as for any Redis)."""
    if target.dev is None:
        return None
    from gateway_plugins.policy.audit.chain import decode_key

    path = Path(target.dev.audit_key_file)
    try:
        return decode_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise UserError(f"kubegate dev's audit key {path}: {reason}; restart `kubegate dev`") from None


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
