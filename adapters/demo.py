"""``erm-bot demo``: the sandbox ERM in-process, a demo admin and agent, and the console.

Everything it stores lives in ``.erm-bot-demo/`` under the working directory: the bot's SQLite
file, a demo-only encryption key and the sandbox's changes (``sandbox.json``), so it runs on a
fresh clone with no configuration, and after a restart the bot and the sandbox still agree: a code
the bot says it issued is in the item's history.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from adapters.console import NAME, Console
from adapters.runtime import open_runtime
from adapters.settings import Settings
from bot.dispatch import Dispatcher
from bot.roles import Role
from erm.errors import InvalidInputError
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, SandboxState, create_app, seed_state, serve
from erm.sandbox.persist import SavedStateError, StateFile, persisting
from erm.secret_box import SecretBox

DEMO_DIR = Path(".erm-bot-demo")
DATABASE = "demo.db"
SANDBOX_FILE = "sandbox.json"
SET_ASIDE = "demo.db.old"
_SQLITE_FILES = ("", "-wal", "-shm")
"""A SQLite database is its file plus these companions: moved together or not at all."""


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """Where the demo keeps its things, and its own encryption key."""

    directory: Path
    key: str

    @property
    def database(self) -> Path:
        return self.directory / DATABASE

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.database.resolve()}"

    @property
    def sandbox(self) -> Path:
        return self.directory / SANDBOX_FILE


def prepare(directory: Path) -> DemoFiles:
    """The demo's directory and its own encryption key, created once, readable by its owner."""
    directory.mkdir(exist_ok=True)
    path = directory / "secret.key"
    if path.exists():
        return DemoFiles(directory, path.read_text(encoding="ascii").strip())
    key = SecretBox.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return DemoFiles(directory, key)


@dataclass(frozen=True, slots=True)
class DemoSandbox:
    """The demo's sandbox with what earlier runs did to it, and how it came to be."""

    state: SandboxState
    saved: StateFile
    restored: int
    """Code events brought back from earlier runs."""
    note: str | None = None
    """Why the demo started afresh, when it did."""


def open_sandbox(files: DemoFiles) -> DemoSandbox:
    """The sandbox as the bot's database knows it: its history kept beside the database.

    The two are kept together or not at all. A saved sandbox without the database would list codes
    the bot never issued; a database without its saved sandbox (left by an older demo, or the file
    removed) holds codes a fresh sandbox never made: that database is set aside and both start
    afresh.
    """
    state = seed_state()
    saved = StateFile(state, files.sandbox)
    restored, note = 0, None
    # Without a database the sandbox starts fresh too: the save below replaces any saved file.
    if files.database.exists() and not files.sandbox.exists():
        note = _set_aside(
            files, f"{files.database} had no saved sandbox ({SANDBOX_FILE}) beside it"
        )
    elif files.database.exists():
        try:
            restored = saved.restore()
        except SavedStateError as exc:  # nothing was applied: the state is still freshly seeded
            note = _set_aside(files, str(exc))
    saved.save()  # at once: the file exists before the database does
    return DemoSandbox(state, saved, restored, note)


def _set_aside(files: DemoFiles, reason: str) -> str:
    """Move the database (and its companions) to ``demo.db.old``; says what was done and why."""
    for suffix in _SQLITE_FILES:
        (files.directory / f"{SET_ASIDE}{suffix}").unlink(missing_ok=True)
    for suffix in _SQLITE_FILES:
        source = files.directory / f"{DATABASE}{suffix}"
        if source.exists():
            source.rename(files.directory / f"{SET_ASIDE}{suffix}")
    return f"starting afresh: {reason}; the old database is now {files.directory / SET_ASIDE}"


EXAMPLES = (
    f"/code days {OPEN_ACP1_OEM_ID} 30 cash 500",
    f"/history {OPEN_ACP1_OEM_ID}",
    "@agent /code free " + OPEN_ACP1_OEM_ID,
)


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Sandbox + SQLite + demo users, then the console (or a script with ``--script``)."""
    files = prepare(DEMO_DIR)
    script = read_script(args.script) if args.script else None
    sandbox = open_sandbox(files)
    if sandbox.note is not None:
        print(f"erm-bot demo: {sandbox.note}", file=sys.stderr)
    async with serve(persisting(create_app(sandbox.state), sandbox.saved)) as url:
        demo_settings = settings.model_copy(
            update={
                "erm_api_url": url,
                "erm_bot_database_url": files.database_url,
                "erm_bot_secret_keys": SecretStr(files.key),
            }
        )
        async with open_runtime(demo_settings) as runtime:
            await runtime.service.add_distributor(
                ACME.name, ACME.email, ACME.password, replace=True
            )
            core = runtime.core()
            for user, role in (("admin", Role.ADMIN), ("agent", Role.AGENT)):
                await core.grants.grant(NAME, user, role, ACME.name, "demo")
            console = Console(Dispatcher(core), user="admin", color=sys.stdout.isatty())
            if script is not None:
                failures = await console.script(script)
                if failures:
                    print(
                        f"{failures} line(s) of the script did not go as expected", file=sys.stderr
                    )
                return 1 if failures else 0
            print("erm-bot demo: the sandbox ERM is running in this process")
            print(f"  ERM      {url} ({served(sandbox.state)}; distributor {ACME.name})")
            print(f"  storage  {files.database} (ERM password and token encrypted)")
            print(f"  history  {files.sandbox} ({sandbox.restored} code(s) kept from earlier runs)")
            print("  you are  console:admin; prefix a line with @agent to act as an agent")
            print()
            print("Try:")
            for example in EXAMPLES:
                print(f"  {example}")
            print("  /help        (exit with Ctrl-D)")
            print()
            await console.repl()
    return 0


def read_script(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the script {path}: {exc.strerror}") from None


def served(state: SandboxState) -> str:
    """What the sandbox serves the demo distributor (its own items, not every distributor's)."""
    items, fleets = state.items_of(ACME.name), state.fleets_of(ACME.name)
    return f"{len(items)} items in {len(fleets)} fleets"
