"""``erm-bot demo``: the sandbox ERM in-process, a demo admin and agent, and the console.

Everything it stores lives in ``.erm-bot-demo/`` under the working directory (a SQLite file and a
demo-only encryption key), so it runs on a fresh clone with no configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import SecretStr

from adapters.console import NAME, Console
from adapters.runtime import open_runtime
from adapters.settings import Settings
from bot.dispatch import Dispatcher
from bot.roles import Role
from erm.errors import InvalidInputError
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, create_app, seed_state, serve
from erm.secret_box import SecretBox

DEMO_DIR = Path(".erm-bot-demo")


def prepare(directory: Path) -> tuple[str, str]:
    """The demo's database URL and its own encryption key, created once, readable by its owner."""
    directory.mkdir(exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{directory.resolve()}/demo.db"
    path = directory / "secret.key"
    if path.exists():
        return database_url, path.read_text(encoding="ascii").strip()
    key = SecretBox.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return database_url, key


EXAMPLES = (
    f"/code days {OPEN_ACP1_OEM_ID} 30 cash 500",
    f"/history {OPEN_ACP1_OEM_ID}",
    "@agent /code free " + OPEN_ACP1_OEM_ID,
)


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Sandbox + SQLite + demo users, then the console (or a script with ``--script``)."""
    database_url, key = prepare(DEMO_DIR)
    script = read_script(args.script) if args.script else None
    state = seed_state()
    async with serve(create_app(state)) as url:
        demo_settings = settings.model_copy(
            update={
                "erm_api_url": url,
                "erm_bot_database_url": database_url,
                "erm_bot_secret_keys": SecretStr(key),
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
            print(f"  ERM      {url} ({len(state.items)} items; distributor {ACME.name})")
            print(f"  storage  {DEMO_DIR}/demo.db (ERM password and token encrypted)")
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
