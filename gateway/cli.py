"""The ``usage-gateway`` command: ``serve``, ``snapshot``, ``export``, ``token new``,
``documents hash``, ``demo`` and ``emulator``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from gateway.access import NAME, digest, new_token, pattern_problem, toml_block
from gateway.app import (
    create_app,
    export_once,
    history_at,
    history_where,
    install_redaction,
    snapshot_once,
)
from gateway.demo import demo_settings, fill_history
from gateway.domain import ProviderId, SourceState, utc_now
from gateway.errors import ConfigError, InputError
from gateway.export import render
from gateway.export_request import ExportRefused, parse_export
from gateway.graphql.schema import document_problem
from gateway.history import HistoryUnavailable
from gateway.history_copy import Copied, copy_history
from gateway.servers import Served, ServerLimits, bind, serve_all
from gateway.settings import DEFAULT_CONFIG_PATH, Settings, load_settings
from gateway.trusted_documents import DASHBOARD_DOCUMENT, manifest_json
from providers import registry

log = logging.getLogger("usage-gateway")
T = TypeVar("T")
CONFIG_ENV = "USAGE_GATEWAY_CONFIG"
DEMO_SEED = 42


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Log every logger's records to stderr at ``level`` (httpx and httpcore from warning on),
    with ``secrets`` redacted in every form :class:`~gateway.app.RedactSecrets` knows."""
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    install_redaction(secrets)


def _bind_or_exit(host: str, port: int) -> Any:
    try:
        return bind(host, port)
    except OSError as exc:
        print(f"usage-gateway: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None


def _load(args: argparse.Namespace) -> tuple[str, Settings] | None:
    path = args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    try:
        return path, load_settings(path)
    except ConfigError as exc:
        print(f"usage-gateway: {exc}", file=sys.stderr)
        return None


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h`` or ``1d`` as seconds (argparse type)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)", text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m or 1h")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * unit


def server_limits(settings: Settings) -> ServerLimits:
    """The connection limits ``[gateway]`` sets for the served gateway."""
    return ServerLimits(
        request_read_timeout=settings.request_read_timeout,
        max_connections=settings.max_connections,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z) or
    ``localhost``. Any other name or address, ``0.0.0.0`` and ``::`` included, is not."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def open_to_all(host: str, port: int) -> str:
    """The line ``serve`` refuses to start with: a non-loopback host and no tokens."""
    return (
        f"usage-gateway: refusing to serve every account to anyone who can reach {host}:{port} "
        "with no [[tokens]] in the config: add one (usage-gateway token new NAME prints a "
        "token and the block to paste), or pass --allow-anonymous to serve without tokens"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    path, settings = loaded
    if not settings.tokens and not is_loopback(args.host):
        if not args.allow_anonymous:
            print(open_to_all(args.host, args.port), file=sys.stderr)
            return 2
        print(
            f"usage-gateway: WARNING: serving {args.host} with no tokens (--allow-anonymous): "
            "anyone who can reach it reads every account",
            file=sys.stderr,
            flush=True,
        )
    configure_logging(args.log_level, settings.secret_values)
    app = create_app(settings, snapshot_every=args.snapshot_every)
    gateway = Served(app, _bind_or_exit(args.host, args.port))
    count = len(settings.accounts)
    print(f"usage-gateway: {count} account{'' if count == 1 else 's'} from {path}", flush=True)
    if settings.tokens:
        names = ", ".join(t.name for t in settings.tokens)
        print(f"tokens: {names} (every route but /healthz and /static/ needs one)", flush=True)
    if args.snapshot_every:
        shared = settings.cache_url.startswith(("redis://", "rediss://"))
        print(
            f"snapshots every {args.snapshot_every:g} s into {history_where(settings)}"
            + (" (one replica per period, elected in Redis)" if shared else ""),
            flush=True,
        )
    if settings.switches.dashboard:
        print(f"Dashboard: {gateway.url}/", flush=True)
    # The last line says where the graph is: GraphiQL's page, or the endpoint alone.
    print(
        f"{'GraphiQL' if settings.switches.graphiql else 'GraphQL'}: {gateway.url}/graphql",
        flush=True,
    )
    asyncio.run(serve_all([gateway], limits=server_limits(settings)))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    _, settings = loaded
    configure_logging(args.log_level, settings.secret_values)
    try:
        outcomes, alerts = asyncio.run(snapshot_once(settings))
    except HistoryUnavailable as exc:
        print(f"usage-gateway: {exc}", file=sys.stderr)
        return 3
    for outcome in outcomes:
        if outcome.ok:
            print(f"{outcome.account_id}: stored {outcome.days} days ({outcome.changed} changed)")
        else:
            print(f"{outcome.account_id}: failed: {outcome.error}")
    if alerts is not None:
        print(alerts.summary())
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_history_copy(args: argparse.Namespace) -> int:
    """``history copy --from URL --to URL``: exit 0 copied, 2 bad arguments, 3 a store that
    cannot be used (one line says which and why)."""
    configure_logging(args.log_level, _url_passwords(args.source, args.target))
    stores = []
    for option, url in (("--from", args.source), ("--to", args.target)):
        scheme = url.partition("://")[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres"):
            print(
                f"usage-gateway history copy: {option}: expected sqlite:///path or"
                f" postgresql://user@host/db, not a {scheme[:20]!r} URL",
                file=sys.stderr,
            )
            return 2
        try:
            stores.append(history_at(url, option))
        except ConfigError as exc:
            print(f"usage-gateway history copy: {option}: {exc.message}", file=sys.stderr)
            return 2
    source, target = stores
    if source.where == target.where and type(source) is type(target):
        print("usage-gateway history copy: --from and --to are the same store", file=sys.stderr)
        return 2
    print(f"copying {source.where} -> {target.where}", flush=True)

    def said(done: Copied) -> None:
        print(f"{done.table}: {done.rows} rows", flush=True)

    async def run() -> list[Copied]:
        try:
            return await copy_history(source, target, progress=said)
        finally:
            await source.close()
            await target.close()

    try:
        copied = asyncio.run(run())
    except HistoryUnavailable as exc:
        print(f"usage-gateway: {exc}", file=sys.stderr)
        return 3
    print(f"copied {sum(c.rows for c in copied)} rows in {len(copied)} tables", flush=True)
    return 0


def _url_passwords(*urls: str) -> frozenset[str]:
    """Passwords in ``urls``, so logs redact them."""
    found = set()
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found.add(password)
    return frozenset(found)


FAILED = (SourceState.RATE_LIMITED, SourceState.AUTH_FAILED, SourceState.UNAVAILABLE)
"""Source states of an export whose vendor read failed (exit 1; the rows hold what is known)."""


def cmd_export(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    _, settings = loaded
    configure_logging(args.log_level, settings.secret_values)
    values = {
        "account": args.account,
        "from": args.start,
        "to": args.end,
        "granularity": args.granularity,
        "format": args.format,
    }
    accounts = [a.id for a in settings.accounts]
    try:
        wanted = parse_export(values, accounts, utc_now().date(), settings.max_query_cost)
    except ExportRefused as exc:
        known = f" (known: {', '.join(exc.known) or 'none'})" if exc.status == 404 else ""
        print(f"usage-gateway export: --{exc.parameter}: {exc.reason}{known}", file=sys.stderr)
        return 2
    try:
        usage = asyncio.run(export_once(settings, wanted))
    except HistoryUnavailable as exc:
        print(f"usage-gateway: {exc}", file=sys.stderr)
        return 3
    except InputError as exc:  # a range the vendor cannot answer, said before any call
        print(f"usage-gateway export: --{exc.argument or 'from'}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(render(wanted.account_id, usage, wanted.form).encode())
    sys.stdout.flush()
    source = usage.source
    if source.state is not SourceState.FRESH:
        cause = f" ({source.cause.name})" if source.cause is not None else ""
        consequence = (
            "; the rows hold what the history store knows, the other days are marked missing"
            if source.state in FAILED
            else ""
        )
        print(
            f"usage-gateway export: account {wanted.account_id!r}: source {source.state.name}"
            f"{cause}: {source.message}{consequence}",
            file=sys.stderr,
        )
    return 1 if source.state in FAILED else 0


def cmd_demo(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    if not is_loopback(args.host):
        print(DEMO_IN_THE_OPEN.format(host=args.host), file=sys.stderr, flush=True)
    gateway_socket = _bind_or_exit(args.host, args.port)
    try:
        return asyncio.run(_demo(args, gateway_socket))
    except HistoryUnavailable as exc:
        print(f"usage-gateway: {exc}", file=sys.stderr)
        return 3


async def _demo(args: argparse.Namespace, gateway_socket: socket.socket) -> int:
    """The emulators, the history filled with the past, then the gateway, until SIGINT or
    SIGTERM; a temporary history is deleted however it ends. Stopped before it serves, the
    exit code is 128 + the signal's number."""
    stop = asyncio.Event()
    signals: list[int] = []

    def stopping(signum: int) -> None:
        signals.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    scratch = None if args.history else tempfile.mkdtemp(prefix="usage-gateway-demo-")
    try:
        path = args.history or os.path.join(str(scratch), "history.sqlite")
        served: list[Served] = []
        urls: dict[str, str] = {}
        for provider, entry in registry().items():
            # The emulators listen on loopback whatever --host says: only the gateway is shared.
            emulator = Served(entry.emulator.factory(seed=args.seed), bind("127.0.0.1", 0))
            served.append(emulator)
            urls[provider] = emulator.url
            print(f"emulator {provider}: {emulator.url}", flush=True)
        kept = "kept" if scratch is None else "a temporary file, deleted at exit"
        print(f"history: {path} ({kept})", flush=True)
        filled = await _until(stop, fill_history(path, seed=args.seed, now=utc_now()))
        if filled is None:
            return 128 + signals[0]
        # The past's emulators and their data caches are garbage now (cycles: lru caches of
        # bound methods); collect them before the gateway freezes what is left at start-up.
        gc.collect()
        failed = f", {filled.failed} failed" if filled.failed else ""
        print(
            f"history: {filled.runs} snapshot runs{failed}, usage back to "
            f"{filled.oldest}, filled in {filled.seconds:.1f} s",
            flush=True,
        )
        settings = demo_settings(urls, path)
        gateway = Served(create_app(settings), gateway_socket)
        served.append(gateway)
        names = ", ".join(a.id for a in settings.accounts)
        print(f"usage-gateway demo: {len(settings.accounts)} accounts ({names})", flush=True)
        print(f"Dashboard: {gateway.url}/", flush=True)
        print(f"GraphiQL: {gateway.url}/graphql", flush=True)
        await serve_all(served, stop=stop, limits=server_limits(settings))
        return 0
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or ``None`` (``work`` cancelled) when ``stop`` is set first. The
    snapshot runs it makes log one line for the whole past, not one each."""
    snapshot_log = logging.getLogger("gateway.snapshot")
    snapshot_log.setLevel(logging.WARNING)
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()
    finally:
        stopped.cancel()
        snapshot_log.setLevel(logging.NOTSET)


def cmd_emulator(args: argparse.Namespace) -> int:
    known = registry()
    entry = known.get(ProviderId(args.provider))
    if entry is None:
        print(
            f"usage-gateway: unknown provider {args.provider!r} "
            f"(expected one of: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    configure_logging(args.log_level)
    emulator = Served(entry.emulator.factory(seed=args.seed), _bind_or_exit(args.host, args.port))
    print(f"emulator {args.provider}: {emulator.url} (seed {args.seed})", flush=True)
    for account in entry.emulator.accounts:
        fields = {k: v for k, v in account.items() if k not in ("id", "name")}
        print(f"  accepts: {fields}", flush=True)
    asyncio.run(serve_all([emulator]))
    return 0


MAX_DOCUMENT_FILE = 1024 * 1024
"""The largest ``.graphql`` file ``documents hash`` reads."""


def cmd_documents_hash(args: argparse.Namespace) -> int:
    """A trusted-documents manifest of the files (and the dashboard's document) on stdout or in
    ``--output``; exit 2, naming the file, when one cannot be read or is no valid document."""
    paths = [*args.files, *([DASHBOARD_DOCUMENT] if args.dashboard else [])]
    if not paths:
        print("usage-gateway documents hash: name .graphql files, or --dashboard", file=sys.stderr)
        return 2
    texts = []
    for path in paths:
        shown = str(path)
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_DOCUMENT_FILE + 1)
            if len(data) > MAX_DOCUMENT_FILE:
                raise ValueError(f"larger than {MAX_DOCUMENT_FILE:,} bytes")
            text = data.decode("utf-8")
        except OSError as exc:
            print(f"usage-gateway documents hash: {shown}: {exc.strerror}", file=sys.stderr)
            return 2
        except (UnicodeDecodeError, ValueError) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            print(f"usage-gateway documents hash: {shown}: {reason}", file=sys.stderr)
            return 2
        problem = document_problem(text)
        if problem is not None:
            print(f"usage-gateway documents hash: {shown}: {problem}", file=sys.stderr)
            return 2
        texts.append(text)
    manifest = manifest_json(texts)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(manifest)
        except OSError as exc:
            print(f"usage-gateway documents hash: {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(manifest)
    return 0


DEMO_IN_THE_OPEN = (
    "usage-gateway demo: WARNING: listening on {host}, not loopback, with no tokens: anyone "
    "who can reach this machine reads the demo's (made-up) accounts and can run queries on it"
)


def cmd_token_new(args: argparse.Namespace) -> int:
    """Print a fresh token and its ``[[tokens]]`` block (which holds only its hash)."""
    if not NAME.match(args.name):
        print(
            f"usage-gateway token new: NAME {args.name[:70]!r} must be 1-64 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit",
            file=sys.stderr,
        )
        return 2
    patterns = args.accounts or ["*"]
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            where = f"--accounts {pattern[:70]!r}"
            print(f"usage-gateway token new: {where}: {problem}", file=sys.stderr)
            return 2
    print(new_token_text(args.name, new_token(), patterns), end="")
    return 0


def new_token_text(name: str, token: str, patterns: Sequence[str]) -> str:
    """What ``token new`` prints: the token, how to send it, and its ``[[tokens]]`` block."""
    return (
        f"Token {name!r} (shown this once: keep it, e.g. in your secret store; the gateway "
        "keeps only its hash):\n"
        f"\n    {token}\n\n"
        "Clients send it as: Authorization: Bearer <token>\n"
        "Paste this block into the gateway's config file (then restart the gateway):\n\n"
        + toml_block(name, digest(token), patterns)
    )


class CommandParser(argparse.ArgumentParser):
    """argparse, with a mistake said on one line (and exit code 2) rather than usage and all."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="usage-gateway",
        description="One GraphQL graph over the usage and quota APIs of your vendors.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, port: int) -> None:
        sub.add_argument("--host", default="127.0.0.1", help="address to listen on")
        sub.add_argument("--port", type=int, default=port, help=f"port (default {port}; 0: free)")
        sub.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning", "error"],
            help="log level (default info)",
        )

    serve = commands.add_parser("serve", help="serve the graph for the accounts in a config")
    serve.add_argument(
        "--config", help=f"config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})"
    )
    common(serve, 8000)
    serve.set_defaults(func=cmd_serve)

    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="serve on a non-loopback --host with no [[tokens]] in the config (anyone who can "
        "reach it reads every account); without it, serve refuses to start",
    )
    serve.add_argument(
        "--snapshot-every",
        type=duration,
        metavar="DURATION",
        help="also snapshot every account into the history store this often (15m, 1h, ...); "
        'with cache_url = "redis://..." the replicas sharing the history store take turns: one '
        "runs each period (periods counted from the epoch by Redis's clock), another takes a "
        "dead runner's period over, and each runs its own while Redis is down",
    )

    snapshot = commands.add_parser("snapshot", help="store every account once in the history")
    snapshot.add_argument(
        "--config", help=f"config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})"
    )
    snapshot.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    snapshot.set_defaults(func=cmd_snapshot)

    export = commands.add_parser(
        "export",
        help="write one account's usage to stdout as CSV or JSON",
        description="Write one account's usage from FROM to TO (UTC days, inclusive) to stdout: "
        "a row per bucket and endpoint, and a row per day nobody knows (missing). Exit codes: "
        "0 written, 1 the vendor read failed (what the history store knows is still written), "
        "2 a bad config or argument, 3 the history store cannot be used.",
    )
    export.add_argument(
        "--config", help=f"config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})"
    )
    export.add_argument("--account", metavar="ID", help="the account's id in the config")
    export.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (UTC)")
    export.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day (UTC)")
    export.add_argument(
        "--granularity", default="DAY", metavar="DAY|WEEK|MONTH", help="bucket size (default DAY)"
    )
    export.add_argument("--format", default="csv", metavar="csv|json", help="(default csv)")
    export.add_argument(
        "--log-level", default="error", choices=["debug", "info", "warning", "error"]
    )
    export.set_defaults(func=cmd_export)

    history = commands.add_parser("history", help="work on history stores")
    history_commands = history.add_subparsers(
        dest="history_command", required=True, metavar="COMMAND"
    )
    copying = history_commands.add_parser(
        "copy",
        help="copy every table of one history store into another (SQLite -> PostgreSQL)",
        description="Copy every table of the history store at FROM into the one at TO "
        "(sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db): "
        "snapshot runs, days, endpoints, changes, quota and rate-limit samples, alert states, "
        "events and deliveries, in batches. TO is migrated first; copying again gives the same "
        "store. Exit codes: 0 copied, 2 bad arguments, 3 a store that cannot be used (missing, "
        "unreachable, refusing the credentials, or written by a newer usage-gateway).",
    )
    copying.add_argument("--from", dest="source", required=True, metavar="URL")
    copying.add_argument("--to", dest="target", required=True, metavar="URL")
    copying.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    copying.set_defaults(func=cmd_history_copy)

    token = commands.add_parser("token", help="make gateway tokens for the config")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    token_new = token_commands.add_parser(
        "new",
        help="print a fresh token and the [[tokens]] block (with its hash) for the config",
        description="Print a fresh random token, to give to a client, and the [[tokens]] block "
        "to paste into the config: it holds the token's SHA-256, never the token.",
    )
    token_new.add_argument("name", metavar="NAME", help="the token's name (shown in logs)")
    token_new.add_argument(
        "--accounts",
        nargs="+",
        metavar="PATTERN",
        help='account ids or glob patterns the token may read (default: "*", every account)',
    )
    token_new.set_defaults(func=cmd_token_new)

    demo = commands.add_parser("demo", help="start every emulator and a gateway against them")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help="data seed of the emulators")
    demo.add_argument(
        "--history",
        metavar="PATH",
        help="keep the demo's history store in this file (default: a temporary file, "
        "deleted at exit)",
    )
    common(demo, 8000)
    demo.set_defaults(func=cmd_demo)

    documents = commands.add_parser(
        "documents", help="trusted documents: write a manifest of .graphql files"
    )
    documents_commands = documents.add_subparsers(
        dest="documents_command", required=True, metavar="COMMAND"
    )
    hashing = documents_commands.add_parser(
        "hash",
        help="write a manifest of .graphql files for [gateway] trusted_documents",
        description="Write a trusted-documents manifest (JSON: each file's SHA-256 to its text) "
        "for [gateway] trusted_documents. Each file is one document, as a client sends it "
        "(naming the operation to run with operationName, or sending only its hash). Every "
        "document is checked against the gateway's schema first. Exit codes: 0 written, 2 a "
        "file that cannot be read or is no valid document (one line names it).",
    )
    hashing.add_argument("files", nargs="*", metavar="FILE", help=".graphql files")
    hashing.add_argument(
        "--dashboard", action="store_true", help="add the dashboard's own document"
    )
    hashing.add_argument("--output", "-o", metavar="FILE", help="write here (default stdout)")
    hashing.set_defaults(func=cmd_documents_hash)

    emulator = commands.add_parser("emulator", help="run one vendor emulator alone")
    emulator.add_argument("provider", help=f"provider id: one of {', '.join(registry())}")
    emulator.add_argument("--seed", type=int, default=DEMO_SEED, help="data seed")
    common(emulator, 0)
    emulator.set_defaults(func=cmd_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
