"""``erm-bot demo``: the sandbox ERM in-process, a demo distributor, and one code issued end to end.

Everything it stores lives in ``.erm-bot-demo/`` under the working directory (a SQLite file and a
demo-only encryption key), so it runs on a fresh clone with no configuration.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic import SecretStr

from adapters.runtime import open_runtime
from bot.settings import Settings
from erm.models import CodeType
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, create_app, seed_state, serve
from erm.vault import SecretBox

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


async def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    database_url, key = prepare(DEMO_DIR)
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
            service = runtime.service
            print("erm-bot demo")
            print(f"  sandbox ERM  {url}  ({len(state.items)} seeded items)")
            print(f"  database     {DEMO_DIR}/demo.db  (ERM password and token encrypted)")
            signed = await service.add_distributor(
                ACME.name, ACME.email, ACME.password, replace=True
            )
            print(f"  distributor  {ACME.name}: signed in to ERM as {signed.name or ACME.email}")

            item = await service.resolve_item(ACME.name, OPEN_ACP1_OEM_ID.lower())
            code = await service.generate_code(
                ACME.name, CodeType.DAYS, item.id, days=30, note="demo payment"
            )
            client = f", client {item.client_name}" if item.client_name else ""
            print()
            print(f"30-day code for {item.label}{client}:")
            print(f"    {code.keypad}")
            _, events = await service.code_history(ACME.name, item.id, 3)
            print()
            print(f"Latest codes of {item.label}:")
            for event in events:
                when = event.created_at.strftime("%Y-%m-%d %H:%M") if event.created_at else "?"
                kind = event.code_type.name.lower() if event.code_type else "?"
                days = f" {event.code_days}d" if event.code_type is CodeType.DAYS else ""
                print(f"  {when}  {kind}{days:<6} {event.keypad}")
    print()
    print("Next: `make test`, or `.venv/bin/erm-bot sandbox` to run the sandbox ERM on its own.")
    return 0
