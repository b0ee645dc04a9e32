"""The ``erm-bot`` command line: the composition root, the one place that sees every layer.

Known failures (bad configuration, ERM errors, bad input) end with one line on stderr and exit
status 1; nothing secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters.console import NAME as PLATFORM
from adapters.console import Console
from adapters.logs import configure_from_settings, configure_logging, settings_secrets
from adapters.platform_ids import USER_IDS
from adapters.runtime import open_engine, open_runtime
from adapters.settings import Settings
from bot.approvals.policy import POLICY_SETTINGS, POLICY_USAGE, apply_setting
from bot.audit import AuditLog
from bot.errors import UsageError, UserError
from bot.permissions import check_user_id
from bot.roles import Role
from bot.storage.approvals import ApprovalStore
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.held import HeldStore
from erm.db import MigrationError
from erm.errors import ErmError, InvalidInputError, VaultError
from erm.models import SignInMethod
from erm.sandbox.faults import add_fault_arguments, faults_from_arguments
from erm.secret_box import SecretBox


def _parser(
    group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, **options: Any
) -> argparse.ArgumentParser:
    """A subcommand whose own --help starts with what it does (its one-line help, as a sentence)."""
    summary = str(options.get("help") or "")
    if summary and "description" not in options:
        options["description"] = summary[0].upper() + summary[1:] + "."
    return group.add_parser(name, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erm-bot", description="Chat-ops for the Omnivoltaic ERM: unlock codes from chat."
    )
    parser.add_argument("--version", action="version", version=f"erm-bot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _parser(sub, "demo", help="the sandbox ERM, demo users and the console, in one process")
    p.add_argument(
        "--script", metavar="FILE", help="run these commands, then exit (non-zero on error)"
    )
    p.set_defaults(run=_demo)

    p = _parser(sub, "console", help="type bot commands in the terminal, as a console user")
    p.add_argument("--as", dest="user", default="admin", help="console user name (default admin)")
    p.set_defaults(run=_console)

    for name, summary in (
        ("run", "run the bot: every platform the configuration enables"),
        ("serve", "the same as run (serves Slack, Telegram and /healthz over HTTP)"),
    ):
        p = _parser(sub, name, help=summary)
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on, 0.0.0.0 for all (default %(default)s)",
        )
        p.add_argument(
            "--port", type=int, default=8080, help="port to listen on (default %(default)s)"
        )
        p.set_defaults(run=_serve)

    p = _parser(
        sub,
        "doctor",
        help="check configuration, database, keys, ERM, Slack and Telegram; say what to fix",
    )
    p.add_argument(
        "--erm",
        action="store_true",
        help="only ERM: per distributor a sign-in and whether erm-bot's documents fit ERM's schema",
    )
    p.set_defaults(run=_doctor)

    p = _parser(sub, "users", help="grant and revoke roles")
    users = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    g = _parser(users, "grant", help="give USER (platform:id) a ROLE at DISTRIBUTOR")
    g.add_argument("user", help="platform:id, as /whoami shows it (e.g. telegram:123456789)")
    g.add_argument("role", choices=[r.label for r in Role], help="the role to give")
    g.add_argument("distributor", help="a distributor added with `erm-bot distributor add`")
    g.set_defaults(run=_users_grant)
    r = _parser(users, "revoke", help="take USER's role at DISTRIBUTOR (or everywhere)")
    r.add_argument("user", help="platform:id, as `erm-bot users list` shows it")
    r.add_argument(
        "distributor", nargs="?", help="only this distributor (default: every distributor)"
    )
    r.set_defaults(run=_users_revoke)
    _parser(users, "list", help="everyone with a role").set_defaults(run=_users_list)

    p = _parser(sub, "audit", help="the audit trail")
    audit = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _parser(audit, "verify", help="check the hash chain").set_defaults(run=_audit_verify)
    e = _parser(
        audit,
        "export",
        help="write a period as CSV to standard output",
        description="Write the audit rows of a period as CSV to standard output (codes appear "
        "only as fingerprints). Both dates are whole UTC days and included; without them, "
        "everything.",
    )
    e.add_argument("--csv", action="store_true", help="CSV, the format (the default)")
    e.add_argument("--since", type=_date, help="first day, YYYY-MM-DD (UTC), included")
    e.add_argument("--until", type=_date, help="last day, YYYY-MM-DD (UTC), included")
    e.set_defaults(run=_audit_export)

    p = _parser(sub, "approvals", help="which code requests need a supervisor's approval")
    approvals = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = _parser(
        approvals,
        "policy",
        help="show DISTRIBUTOR's approval policy, or change one SETTING to VALUE",
        description=f"Settings: {POLICY_USAGE}.",
    )
    ap.add_argument("distributor", help="the distributor whose policy to show or change")
    ap.add_argument(
        "setting", nargs="?", choices=POLICY_SETTINGS, help="the setting to change (omit to show)"
    )
    ap.add_argument("value", nargs="?", help="on, off or a number")
    ap.set_defaults(run=_approvals_policy)

    p = _parser(sub, "sandbox", help="serve the stand-in ERM GraphQL API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the URL and credentials as JSON")
    p.add_argument(
        "--token-ttl", type=int, default=86400, help="access token lifetime, seconds (ERM: 24 h)"
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        type=Path,
        help="keep the codes it issues in FILE and serve them again after a restart "
        "(default: start afresh each time)",
    )
    # The three faults most used by hand keep their short spellings (README).
    add_fault_arguments(
        p,
        short={
            "latency_ms": "--latency-ms",
            "error_rate": "--error-rate",
            "drop_rate": "--drop-rate",
        },
    )
    p.set_defaults(run=_sandbox)

    p = _parser(sub, "db", help="database maintenance")
    db = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _parser(db, "upgrade", help="apply migrations").set_defaults(run=_db_upgrade)

    p = _parser(sub, "keys", help="encryption keys for stored credentials")
    keys = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _parser(keys, "generate", help="print a new key").set_defaults(run=_keys_generate)
    _parser(keys, "rotate", help="re-encrypt every stored secret under the first key").set_defaults(
        run=_keys_rotate
    )

    p = _parser(sub, "distributor", help="ERM distributor accounts the bot acts for")
    dist = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = _parser(dist, "add", help="check credentials with ERM and store them encrypted")
    add.add_argument("name", help="short name, e.g. acme")
    add.add_argument("--email", required=True, help="the ERM login of the distributor's account")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.add_argument("--replace", action="store_true", help="replace existing credentials")
    add.add_argument(
        "--sign-in",
        choices=[m.value for m in SignInMethod],
        default=SignInMethod.CLIENT.value,
        help="ERM sign-in: client (signInClient, distributor accounts; the default) or "
        "user (signInUser, staff accounts)",
    )
    add.set_defaults(run=_distributor_add)
    _parser(dist, "list", help="list distributors").set_defaults(run=_distributor_list)
    rm = _parser(dist, "remove", help="forget a distributor's credentials")
    rm.add_argument("name", help="the distributor's short name, as `distributor list` shows it")
    rm.set_defaults(run=_distributor_remove)
    return parser


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    # Here, not at the top: `erm-bot serve` would carry the demo and the sandbox (~6 MB).
    from adapters.demo import run_demo

    return await run_demo(args, settings)


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    """Blocking: the sandbox runs its own event loop until interrupted."""
    from erm.sandbox.persist import SavedStateError
    from erm.sandbox.server import run_sandbox

    try:
        faults = faults_from_arguments(args)
    except ValueError as exc:
        print(f"erm-bot sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        run_sandbox(
            args.host,
            args.port,
            json_output=args.json,
            faults=faults,
            token_ttl=args.token_ttl,
            state_file=args.state,
        )
    except (OSError, SavedStateError) as exc:
        print(f"erm-bot sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


async def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings):
        pass
    print("database is at the newest schema")
    return 0


async def _keys_generate(args: argparse.Namespace, settings: Settings) -> int:
    print(SecretBox.generate_key())
    return 0


async def _keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """Distributors' secrets and issued codes, each store on its own: one that cannot finish
    does not keep the other from being rotated; a rerun finishes the job."""
    problems: list[str] = []
    secrets = codes = 0
    async with open_runtime(settings) as runtime:
        try:
            secrets = await runtime.vault.rotate()
        except VaultError as exc:
            problems.append(str(exc))
        try:
            codes = await CodeStore(runtime.engine, box=runtime.vault.box).rotate()
        except VaultError as exc:
            problems.append(str(exc))
        # Messages waiting for their user (they may carry a code): the old key may go next.
        held = await HeldStore(runtime.engine, box=runtime.vault.box).rotate()
    if problems:
        raise VaultError("; ".join(problems))
    of_them = f" ({codes} of them issued codes)" if codes else ""
    waiting = f", {held} message(s) waiting for their user" if held else ""
    print(f"re-encrypted {secrets + codes} stored value(s) under the newest key{of_them}{waiting}")
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _split_user(text: str) -> tuple[str, str]:
    platform, sep, user_id = text.partition(":")
    if not sep or not platform or not user_id:
        raise InvalidInputError(f"name the user as platform:id (e.g. slack:U0123), not {text!r}")
    return platform.lower(), user_id


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.serve import serve  # the chat libraries load only for the bot itself

    configure_from_settings(settings)
    return await serve(settings, args.host, args.port)


async def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.doctor import run_doctor  # the chat libraries load only when needed

    # Library warnings only: the checks print their own lines on standard output.
    configure_logging(
        level=max(settings.log_level, logging.WARNING),
        log_format=settings.erm_bot_log_format,
        secrets_=settings_secrets(settings),
    )
    return await run_doctor(settings, erm_only=args.erm)


async def _console(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as runtime:
        console = Console(runtime.dispatcher(), user=args.user, color=sys.stdout.isatty())
        print(f"erm-bot console as {PLATFORM}:{args.user} (Ctrl-D to leave)")
        await console.repl()
    return 0


async def _users_grant(args: argparse.Namespace, settings: Settings) -> int:
    """Needs no encryption key: an unknown distributor is refused by the grant itself."""
    platform, user_id = _split_user(args.user)
    check_user_id(USER_IDS, platform, user_id)  # an id that cannot exist: refused, nothing stored
    async with open_engine(settings) as engine:
        await GrantStore(engine).grant(
            platform, user_id, Role.parse(args.role), args.distributor, "cli"
        )
    print(f"{platform}:{user_id} is now {args.role} at {args.distributor.lower()}")
    return 0


async def _users_revoke(args: argparse.Namespace, settings: Settings) -> int:
    platform, user_id = _split_user(args.user)
    async with open_engine(settings) as engine:
        removed = await GrantStore(engine).revoke(platform, user_id, args.distributor)
    print(f"removed {removed} grant(s) of {platform}:{user_id}")
    return 0


async def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings) as engine:
        grants = await GrantStore(engine).users()
    for grant in grants:
        print(f"{grant.platform}:{grant.user_id}\t{grant.role.label}\t{grant.distributor}")
    if not grants:
        print("no grants yet: `erm-bot users grant slack:U0123 admin DISTRIBUTOR`")
    return 0


async def _approvals_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Needs no encryption key, like ``users grant``; the same settings as ``/approvals policy``."""
    distributor = args.distributor.strip().lower()
    async with open_engine(settings) as engine:
        store = ApprovalStore(engine)
        if not await store.distributor_known(distributor):
            raise UsageError(f"no distributor {distributor!r} is configured")
        policy = await store.policy(distributor)
        if args.setting is not None:
            policy = apply_setting(policy, args.setting, args.value)
            await store.set_policy(distributor, policy, by="cli", now=datetime.now(UTC))
        channels = await store.channels(distributor)
    print(f"approval policy of {distributor}")
    for field in policy.fields():
        print(f"  {field.label}: {field.value}")
    for channel in channels:
        print(f"  Approval chat: {channel.platform} {channel.chat_id}")
    return 0


async def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings) as engine:
        verdict = await AuditLog(engine).verify()
    if verdict.ok:
        print(f"audit trail intact: {verdict.rows} row(s)")
        return 0
    print(f"audit trail broken at row {verdict.first_bad_id}: {verdict.problem}", file=sys.stderr)
    return 1


async def _audit_export(args: argparse.Namespace, settings: Settings) -> int:
    since, last = args.since, args.until
    if since is not None and last is not None and since > last:
        raise UsageError(
            f"--since {since:%Y-%m-%d} is after --until {last:%Y-%m-%d}: "
            "give the earlier day first (both days are included)"
        )
    until = None if last is None else last + timedelta(days=1)  # the store's end is exclusive
    try:
        async with open_engine(settings) as engine:
            count = await AuditLog(engine).export_csv(sys.stdout, since=since, until=until)
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader (head, a pager) closed the pipe: it has what it wanted. Python would
        # complain again when it flushes stdout at exit, so stdout goes nowhere from here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"exported {count} row(s)", file=sys.stderr)
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass("ERM password: ")


async def _distributor_add(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args.password_stdin)
    if not password:
        raise InvalidInputError("no password given")
    async with open_runtime(settings) as runtime:
        signed = await runtime.service.add_distributor(
            args.name,
            args.email,
            password,
            sign_in=SignInMethod(args.sign_in),
            replace=args.replace,
        )
    print(f"distributor {args.name} added: signed in to ERM as {signed.name or args.email}")
    return 0


async def _distributor_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as runtime:
        infos = await runtime.vault.list_distributors()
    if not infos:
        print("no distributors yet: add one with `erm-bot distributor add NAME --email E`")
    for info in infos:
        token = "token cached" if info.has_token else "no token yet"
        print(
            f"{info.name}\t{info.email}\t{info.client_id or '-'}\t{token}"
            f"\tsign-in {info.sign_in.value}"
        )
    return 0


async def _distributor_remove(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings) as runtime:
        await runtime.vault.remove_distributor(args.name)
    print(f"distributor {args.name} removed")
    return 0


def _version() -> str:
    try:
        return version("erm-bot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    # python-telegram-bot 22: RetryAfter.retry_after as a timedelta, without a deprecation warning.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not arguments:  # `erm-bot` alone: what it can do, not an error
        parser.print_help()
        return 0
    args = parser.parse_args(arguments)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        print(f"erm-bot: bad configuration: {problems}", file=sys.stderr)
        return 2
    try:
        outcome = args.run(args, settings)
        if inspect.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return int(outcome)
    except (ErmError, UserError, MigrationError) as exc:
        print(f"erm-bot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
