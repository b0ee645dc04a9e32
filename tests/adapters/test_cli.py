"""The ``erm-bot`` command line, run as a user runs it: a child process, real database, real HTTP.

Every run is the installed console script in ``tmp_path`` (so no developer ``.env`` is read), with
this process's environment minus every ``ERM_*`` variable plus what the test sets, bounded by a
timeout and killed if it overruns. The ERM behind the ``distributor`` and ``keys`` commands is the
sandbox served in the test's event loop over 127.0.0.1; ``erm-bot sandbox`` runs as its own
long-lived process, stopped by a signal and killed on the way out whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.audit import AuditEntry, AuditLog
from bot.storage.code_records import IssuedCodeRecord
from bot.storage.codes import CodeStore
from erm.db import create_engine
from erm.errors import VaultError
from erm.models import SignInMethod
from erm.sandbox import (
    ACME,
    ACME_STAFF,
    DEMO_DISTRIBUTORS,
    SUNBRIGHT,
    create_app,
    seed_state,
    serve,
)
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox
from erm.vault import TokenVault

CONSOLE_SCRIPT = Path(sys.executable).with_name("erm-bot")
MODULE_COMMAND = (sys.executable, "-m", "adapters.cli")
RUN_TIMEOUT = 60.0
"""Seconds any one CLI run may take (the demo, the slowest, takes a few)."""
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
"""The sandbox cancels hanging requests after 1 s, so a stop takes well under this."""

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { _id accessToken email }
}"""

ISSUED = IssuedCodeRecord(
    distributor="acme",
    item_id="65f0c0ffee0000000000000a",
    item_label="TEST2503000017",
    code_type="DAYSCODE",
    days=30,
    code_dec="024413975593119504641",
    code_hex="0A1B2C3D",
    issued_by_platform="console",
    issued_by_user="admin",
    issued_by_name="admin",
    issued_at=datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
)
KEYPAD = re.compile(r"\*\d{3}( \d{3}){6}#")
ANNOUNCED_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/graphql")


# -- running erm-bot ----------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """The test process's environment without any ERM_* setting."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ERM_")}


def erm_bot_command() -> tuple[str, ...]:
    """The installed ``erm-bot`` console script, as a user runs it."""
    if not CONSOLE_SCRIPT.exists():
        pytest.fail(f"{CONSOLE_SCRIPT} is missing: install the project with `pip install -e .`")
    return (str(CONSOLE_SCRIPT),)


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.wait(), RUN_TIMEOUT)


@dataclass(frozen=True)
class Completed:
    """What one CLI run did."""

    returncode: int
    stdout: str
    stderr: str


class Cli:
    """Runs ``erm-bot`` in a child process in the test's directory, with a controlled environment.

    ``env`` holds the test's ERM_* settings; a call can add to them, and a value of ``None``
    removes a variable for that call.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env: dict[str, str] = {}

    async def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str | None] | None = None,
        command: tuple[str, ...] | None = None,
        time_limit: float = RUN_TIMEOUT,
    ) -> Completed:
        environment = {**clean_environment(), **self.env}
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        process = await asyncio.create_subprocess_exec(
            *(command or erm_bot_command()),
            *args,
            cwd=self.cwd,
            env=environment,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            data = stdin.encode() if stdin is not None else b""
            out, err = await asyncio.wait_for(process.communicate(data), time_limit)
        except TimeoutError:
            pytest.fail(f"`erm-bot {' '.join(args)}` did not finish within {time_limit} s")
        finally:
            await stop(process)
        assert process.returncode is not None
        return Completed(process.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``erm-bot`` run in ``tmp_path`` with no ERM_* setting (tests add theirs to ``cli.env``)."""
    return Cli(tmp_path)


@dataclass(frozen=True)
class Sandbox:
    url: str
    state: SandboxState


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox ERM served over loopback HTTP by uvicorn in the test's event loop."""
    state = seed_state()
    async with serve(create_app(state)) as url:
        yield Sandbox(url, state)


# -- helpers ------------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@contextlib.asynccontextmanager
async def open_vault(path: Path, keys: Sequence[str]) -> AsyncIterator[TokenVault]:
    """The vault in the SQLite file ``path`` as the CLI left it (no migration is run here)."""
    engine = create_engine(sqlite_url(path))
    try:
        yield TokenVault(engine, SecretBox(keys))
    finally:
        await engine.dispose()


def database_files(path: Path) -> list[Path]:
    """The SQLite file ``path`` and any journal or WAL file beside it."""
    return sorted(path.parent.glob(path.name + "*"))


def raw_bytes(path: Path) -> bytes:
    """Everything SQLite keeps for ``path`` on disk."""
    files = database_files(path)
    assert path in files
    return b"".join(f.read_bytes() for f in files)


def tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def alembic_versions(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT version_num FROM alembic_version ORDER BY 1")
        return [version for (version,) in rows]


def assert_one_line_error(result: Completed, *fragments: str) -> str:
    """``result`` failed with exactly one ``erm-bot: ...`` line on stderr containing fragments."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("erm-bot: "), line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), line
    return line


async def sign_in(url: str, email: str, password: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            url,
            json={"query": SIGN_IN, "variables": {"creds": {"email": email, "password": password}}},
        )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload
    result: dict[str, str] = payload["data"]["signInClient"]
    return result


@contextlib.asynccontextmanager
async def sandbox_process(tmp_path: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``erm-bot sandbox ARGS`` as a child process, killed on the way out whatever happened."""
    process = await asyncio.create_subprocess_exec(
        *erm_bot_command(),
        "sandbox",
        *args,
        cwd=tmp_path,
        env=clean_environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        await stop(process)


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"the sandbox printed nothing within {STARTUP_TIMEOUT} s")
    if not line:
        assert process.stderr is not None
        stderr = await asyncio.wait_for(process.stderr.read(), RUN_TIMEOUT)
        pytest.fail(f"the sandbox closed its output; stderr: {stderr.decode()}")
    return line.decode()


async def stop_with(process: asyncio.subprocess.Process, sig: signal.Signals) -> tuple[int, str]:
    """Send ``sig`` and wait (bounded) for the process to end; its status and what it wrote."""
    process.send_signal(sig)
    try:
        returncode = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"the sandbox did not stop within {STOP_TIMEOUT} s of {sig.name}")
    assert process.stderr is not None
    stderr = await asyncio.wait_for(process.stderr.read(), STOP_TIMEOUT)
    return returncode, stderr.decode()


def busy_port() -> socket.socket:
    """A listening socket on 127.0.0.1; its port is taken while it stays open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
def empty_db_file(db_path: Path) -> Path:
    """An empty database file, as a fresh deployment might have."""
    db_path.touch()
    return db_path


@pytest.fixture
def key() -> str:
    return SecretBox.generate_key()


@pytest.fixture
def configured(cli: Cli, sandbox: Sandbox, db_path: Path, key: str) -> Cli:
    """The CLI pointed at the loopback sandbox, a fresh SQLite file and one key."""
    cli.env.update(
        {
            "ERM_API_URL": sandbox.url,
            "ERM_BOT_DATABASE_URL": sqlite_url(db_path),
            "ERM_BOT_SECRET_KEYS": key,
        }
    )
    return cli


async def add_acme(cli: Cli, *extra: str, password: str = ACME.password) -> Completed:
    return await cli(
        "distributor",
        "add",
        "acme",
        "--email",
        ACME.email,
        "--password-stdin",
        *extra,
        stdin=password + "\n",
    )


# -- erm-bot sandbox ----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_sandbox_json_announces_a_working_url_and_stops_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    async with sandbox_process(tmp_path, "--port", "0", "--json") as process:
        announcement = json.loads(await read_line(process))

        assert set(announcement) == {"url", "distributors"}
        url = announcement["url"]
        match = ANNOUNCED_URL.fullmatch(url)
        assert match, url
        assert int(match.group(1)) != 0  # the port actually bound, not the one asked for
        assert announcement["distributors"] == [
            {"name": d.name, "email": d.email, "password": d.password} for d in DEMO_DISTRIBUTORS
        ]
        for distributor in announcement["distributors"]:
            signed = await sign_in(url, distributor["email"], distributor["password"])
            assert signed["accessToken"]
            assert signed["email"] == distributor["email"]

        returncode, stderr = await stop_with(process, sig)

    # A stop asked for by a signal is not a failure: exit 0, or death by that same signal (uvicorn
    # re-raises SIGTERM after its graceful shutdown), never an error status or a traceback.
    assert returncode in (0, -sig), (returncode, stderr)
    assert stderr == ""
    with pytest.raises(httpx.ConnectError):
        await sign_in(url, ACME.email, ACME.password)


async def test_sandbox_prints_the_url_and_demo_credentials_for_people(tmp_path: Path) -> None:
    async with sandbox_process(tmp_path, "--port", "0") as process:
        lines = [await read_line(process)]
        while "Ctrl-C" not in lines[-1]:
            lines.append(await read_line(process))
        text = "".join(lines)

        match = ANNOUNCED_URL.search(lines[0])
        assert match, lines[0]
        assert int(match.group(1)) != 0
        assert lines[0].startswith("ERM sandbox listening on http://127.0.0.1:")
        for demo in DEMO_DISTRIBUTORS:
            assert re.search(rf"{demo.name}\s+{re.escape(demo.email)}\s+{demo.password}", text)
        assert "Faults:" not in text  # none injected
        assert (await sign_in(match.group(0), ACME.email, ACME.password))["accessToken"]

        returncode, stderr = await stop_with(process, signal.SIGINT)

    assert returncode in (0, -signal.SIGINT), (returncode, stderr)
    assert stderr == ""


async def test_sandbox_fault_flags_reach_the_server(tmp_path: Path) -> None:
    async with sandbox_process(tmp_path, "--port", "0", "--json", "--error-rate", "1") as process:
        url = json.loads(await read_line(process))["url"]
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(url, json={"query": "{ __typename }"})
        returncode, _ = await stop_with(process, signal.SIGINT)

    assert response.status_code == 503
    assert returncode in (0, -signal.SIGINT)


async def test_sandbox_out_of_range_fault_flag_is_a_usage_error(cli: Cli) -> None:
    result = await cli("sandbox", "--port", "0", "--error-rate", "2", time_limit=STOP_TIMEOUT)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "erm-bot sandbox: error_rate must be between 0 and 1\n"


async def test_sandbox_on_a_busy_port_fails_with_a_clear_message(cli: Cli) -> None:
    with contextlib.closing(busy_port()) as taken:
        port = taken.getsockname()[1]
        result = await cli("sandbox", "--port", str(port), time_limit=STOP_TIMEOUT)

    assert result.returncode != 0
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


async def test_sandbox_on_a_busy_port_is_reported_by_erm_bot_with_status_1(cli: Cli) -> None:
    with contextlib.closing(busy_port()) as taken:
        port = taken.getsockname()[1]
        result = await cli("sandbox", "--port", str(port), time_limit=STOP_TIMEOUT)

    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("erm-bot sandbox: "), result.stderr
    assert str(port) in last


# -- erm-bot keys generate ----------------------------------------------------------------------


async def test_keys_generate_prints_a_new_usable_key_each_time(cli: Cli) -> None:
    first = await cli("keys", "generate")
    second = await cli("keys", "generate", command=MODULE_COMMAND)  # python -m adapters.cli

    keys = []
    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert len(result.stdout.splitlines()) == 1
        keys.append(result.stdout.strip())
    assert keys[0] != keys[1]
    box = SecretBox(keys)  # both accepted, and as two distinct keys
    assert len(box.key_ids) == 2
    sealed = box.encrypt("secret", context="test")
    assert SecretBox([keys[0]]).decrypt(sealed, context="test") == "secret"


# -- erm-bot distributor ------------------------------------------------------------------------


async def test_distributor_add_with_sign_in_user_acts_for_the_staff_members_distributor(
    configured: Cli, sandbox: Sandbox, db_path: Path, key: str
) -> None:
    staff = ("distributor", "add", "acme", "--email", ACME_STAFF.email, "--password-stdin")

    as_client = await configured(*staff, stdin=ACME_STAFF.password + "\n")
    as_user = await configured(*staff, "--sign-in", "user", stdin=ACME_STAFF.password + "\n")

    assert as_client.returncode == 1  # staff accounts cannot use signInClient
    assert "Invalid Credentials" in as_client.stderr
    assert as_user.returncode == 0, as_user.stderr
    async with open_vault(db_path, [key]) as vault:
        credentials = await vault.credentials("acme")
    assert credentials.sign_in is SignInMethod.USER
    # The token's distributorId claim, not the staff member's own _id.
    assert credentials.client_id == sandbox.state.distributor_by_name("acme").id


async def test_distributor_add_checks_with_erm_and_stores_only_ciphertext(
    configured: Cli, sandbox: Sandbox, db_path: Path, key: str
) -> None:
    result = await add_acme(configured)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    acme = sandbox.state.distributor_by_name("acme")
    assert result.stdout == f"distributor acme added: signed in to ERM as {acme.display_name}\n"
    assert ACME.password not in result.stdout

    async with open_vault(db_path, [key]) as vault:
        credentials = await vault.credentials("acme")
        token = await vault.load_token("acme")
    assert (credentials.email, credentials.password) == (ACME.email, ACME.password)
    assert credentials.client_id == acme.id  # learned from the sandbox's sign-in answer
    assert token is not None
    assert token.client_id == acme.id
    assert token.expires_at is not None

    stored = raw_bytes(db_path)
    assert ACME.email.encode() in stored  # the check below reads the right file
    assert ACME.password.encode() not in stored
    assert token.access_token.encode() not in stored
    assert token.access_token.rsplit(".", 1)[-1].encode() not in stored  # not even the signature


async def test_distributor_add_with_a_wrong_password_is_refused_and_stores_nothing(
    configured: Cli, db_path: Path, key: str
) -> None:
    result = await add_acme(configured, password="not-the-password")

    assert result.returncode == 1
    assert result.stdout == ""
    line = assert_one_line_error(result, "refused", "invalid credentials")
    assert "not-the-password" not in line
    async with open_vault(db_path, [key]) as vault:
        assert await vault.list_distributors() == []


async def test_distributor_add_refuses_an_existing_name_unless_replacing(
    configured: Cli, db_path: Path, key: str
) -> None:
    assert (await add_acme(configured)).returncode == 0

    again = await add_acme(configured)
    replaced = await add_acme(configured, "--replace")

    assert again.returncode == 1
    assert_one_line_error(again, "already exists", "erm-bot distributor add acme", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    async with open_vault(db_path, [key]) as vault:
        assert await vault.names() == ["acme"]


async def test_distributor_add_without_a_password_is_refused(configured: Cli) -> None:
    result = await configured(
        "distributor", "add", "acme", "--email", ACME.email, "--password-stdin", stdin="\n"
    )

    assert result.returncode == 1
    assert_one_line_error(result, "no password")


async def test_distributor_list_and_remove(configured: Cli, db_path: Path, key: str) -> None:
    empty = await configured("distributor", "list")
    assert empty.returncode == 0, empty.stderr
    assert "no distributors yet" in empty.stdout
    assert (await add_acme(configured)).returncode == 0
    async with open_vault(db_path, [key]) as vault:
        token = await vault.load_token("acme")
    assert token is not None

    listed = await configured("distributor", "list")
    removed = await configured("distributor", "remove", "acme")
    after = await configured("distributor", "list")
    again = await configured("distributor", "remove", "acme")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"acme\t{ACME.email}\t{token.client_id}\ttoken cached\tsign-in client"
    ]
    assert ACME.password not in listed.stdout
    assert token.access_token not in listed.stdout
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == "distributor acme removed\n"
    assert "no distributors yet" in after.stdout
    assert again.returncode == 1
    assert_one_line_error(again, "no distributor named 'acme'")
    async with open_vault(db_path, [key]) as vault:
        assert await vault.names() == []


@pytest.mark.parametrize(
    ("keys", "command"),
    [
        pytest.param(
            None,
            ("distributor", "add", "acme", "--email", ACME.email, "--password-stdin"),
            id="unset-add",
        ),
        pytest.param("", ("distributor", "list"), id="empty-list"),
        pytest.param(" , ", ("keys", "rotate"), id="blank-rotate"),
    ],
)
async def test_missing_secret_keys_say_how_to_make_one(
    configured: Cli, db_path: Path, keys: str | None, command: tuple[str, ...]
) -> None:
    result = await configured(
        *command,
        stdin=ACME.password + "\n",
        env={"ERM_BOT_SECRET_KEYS": keys},
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_line_error(result, "ERM_BOT_SECRET_KEYS", "erm-bot keys generate")
    assert database_files(db_path) == []  # refused before the database was opened


async def test_malformed_secret_key_is_a_one_line_error(configured: Cli) -> None:
    result = await configured("distributor", "list", env={"ERM_BOT_SECRET_KEYS": "not-a-key"})

    assert result.returncode == 1
    assert result.stdout == ""
    line = assert_one_line_error(result, "ERM_BOT_SECRET_KEYS", "erm-bot keys generate")
    assert "not-a-key" not in line


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ERM_API_URL", "ftp://x", "http://"),
        ("ERM_READ_TIMEOUT", "-1", "greater than 0"),
        ("ERM_QUERY_ATTEMPTS", "many", "integer"),
    ],
)
async def test_bad_configuration_exits_2_naming_the_setting(
    configured: Cli, db_path: Path, variable: str, value: str, fragment: str
) -> None:
    result = await configured(
        "distributor",
        "add",
        "acme",
        "--email",
        ACME.email,
        "--password-stdin",
        stdin=ACME.password + "\n",
        env={variable: value},
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_line_error(result, "bad configuration", variable, fragment)
    assert database_files(db_path) == []  # refused before touching anything


async def test_settings_are_read_from_dotenv_in_the_working_directory(
    cli: Cli, tmp_path: Path, key: str
) -> None:
    db_path = tmp_path / "from-dotenv.db"
    (tmp_path / ".env").write_text(
        f"ERM_BOT_DATABASE_URL={sqlite_url(db_path)}\nERM_BOT_SECRET_KEYS={key}\n"
    )

    result = await cli("distributor", "list")

    assert result.returncode == 0, result.stderr
    assert "no distributors yet" in result.stdout
    assert "erm_distributors" in tables(db_path)


# -- erm-bot keys rotate ------------------------------------------------------------------------


async def test_keys_rotate_moves_every_secret_to_the_new_key(
    configured: Cli, db_path: Path
) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    configured.env["ERM_BOT_SECRET_KEYS"] = old
    for demo in (ACME, SUNBRIGHT):
        added = await configured(
            "distributor",
            "add",
            demo.name,
            "--email",
            demo.email,
            "--password-stdin",
            stdin=demo.password + "\n",
        )
        assert added.returncode == 0, added.stderr
    async with open_vault(db_path, [old]) as vault:
        tokens = {name: await vault.load_token(name) for name in ("acme", "sunbright")}

    rotated = await configured("keys", "rotate", env={"ERM_BOT_SECRET_KEYS": f"{new},{old}"})
    again = await configured("keys", "rotate", env={"ERM_BOT_SECRET_KEYS": f"{new},{old}"})

    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == "re-encrypted 4 stored value(s) under the newest key\n"  # 2 x 2
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("re-encrypted 0 stored value(s)")
    async with open_vault(db_path, [new]) as vault:
        assert await vault.names() == ["acme", "sunbright"]
        for demo in (ACME, SUNBRIGHT):
            credentials = await vault.credentials(demo.name)
            assert (credentials.email, credentials.password) == (demo.email, demo.password)
            assert await vault.load_token(demo.name) == tokens[demo.name]
    async with open_vault(db_path, [old]) as vault:
        with pytest.raises(VaultError):
            await vault.credentials("acme")  # nothing is left under the old key


async def test_keys_rotate_without_the_old_key_fails_and_changes_nothing(
    configured: Cli, db_path: Path, key: str
) -> None:
    assert (await add_acme(configured)).returncode == 0
    before = raw_bytes(db_path)

    result = await configured(
        "keys", "rotate", env={"ERM_BOT_SECRET_KEYS": SecretBox.generate_key()}
    )

    assert result.returncode == 1
    assert result.stdout == ""
    line = assert_one_line_error(result, "rotation", "acme")
    assert ACME.password not in line
    assert key not in line
    async with open_vault(db_path, [key]) as vault:
        assert (await vault.credentials("acme")).password == ACME.password
    assert raw_bytes(db_path) == before


async def test_keys_rotate_also_moves_issued_codes_to_the_new_key(
    configured: Cli, db_path: Path
) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    configured.env["ERM_BOT_SECRET_KEYS"] = old
    assert (await add_acme(configured)).returncode == 0
    engine = create_engine(sqlite_url(db_path))
    try:
        await CodeStore(engine, box=SecretBox([old])).record_issue(ISSUED)
    finally:
        await engine.dispose()

    rotated = await configured("keys", "rotate", env={"ERM_BOT_SECRET_KEYS": f"{new},{old}"})

    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == (
        "re-encrypted 3 stored value(s) under the newest key (1 of them issued codes)\n"
    )
    engine = create_engine(sqlite_url(db_path))
    try:
        found = await CodeStore(engine, box=SecretBox([new])).last_issue("acme", ISSUED.item_id)
    finally:
        await engine.dispose()
    assert found is not None
    assert found.code_dec == ISSUED.code_dec


async def test_audit_export_shows_fingerprints_and_neutralises_formulas(
    configured: Cli, db_path: Path, key: str
) -> None:
    assert (await configured("db", "upgrade")).returncode == 0
    engine = create_engine(sqlite_url(db_path))
    try:
        await AuditLog(engine, box=SecretBox([key])).append(
            AuditEntry(
                at=datetime.now(UTC),
                platform="telegram",
                user_id="42",
                user_name='=HYPERLINK("http://evil.test","click")',
                command="code days",
                outcome="ok",
                erm_code_event=ISSUED.code_dec,
            )
        )
    finally:
        await engine.dispose()

    result = await configured("audit", "export", "--csv")

    assert result.returncode == 0, result.stderr
    assert "'=HYPERLINK" in result.stdout
    assert ",=" not in result.stdout
    assert ISSUED.code_dec not in result.stdout
    assert re.search(r"fp:[0-9a-f]{8}\.[0-9a-f]{16}·…641", result.stdout)


# -- erm-bot db upgrade -------------------------------------------------------------------------


async def test_db_upgrade_creates_the_schema_in_an_empty_file_and_is_idempotent(
    cli: Cli, empty_db_file: Path
) -> None:
    db_path = empty_db_file
    cli.env["ERM_BOT_DATABASE_URL"] = sqlite_url(db_path)  # and no secret key: not needed here

    first = await cli("db", "upgrade")
    schema = tables(db_path)
    versions = alembic_versions(db_path)
    second = await cli("db", "upgrade")

    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert result.stdout == "database is at the newest schema\n"
        assert result.stderr == ""
    assert {"erm_distributors", "alembic_version"} <= schema
    assert versions
    assert tables(db_path) == schema
    assert alembic_versions(db_path) == versions


async def test_db_upgrade_defaults_to_erm_bot_db_in_the_working_directory(
    cli: Cli, tmp_path: Path
) -> None:
    result = await cli("db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert "erm_distributors" in tables(tmp_path / "erm-bot.db")


# -- erm-bot demo -------------------------------------------------------------------------------


async def test_demo_issues_a_code_from_scratch_and_runs_again(cli: Cli, tmp_path: Path) -> None:
    typed = "/code days TEST2503000001 30 cash 500\n"
    first = await cli("demo", stdin=typed)
    key_file = tmp_path / ".erm-bot-demo" / "secret.key"
    demo_key = key_file.read_text().strip()
    second = await cli("demo", stdin=typed)

    for result in (first, second):
        assert result.returncode == 0, result.stderr
        assert KEYPAD.search(result.stdout), result.stdout
        assert ACME.password not in result.stdout
        assert demo_key not in result.stdout
    assert "30-day code for" in first.stdout
    assert SecretBox([demo_key]).key_ids  # a usable key, kept for the next run...
    assert key_file.read_text().strip() == demo_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # ...readable by its owner only
    demo_db = tmp_path / ".erm-bot-demo" / "demo.db"
    assert ACME.password.encode() not in raw_bytes(demo_db)
    async with open_vault(demo_db, [demo_key]) as vault:
        assert await vault.names() == ["acme"]


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({}, ("no chat platform", "SLACK_BOT_TOKEN", "TELEGRAM_BOT_TOKEN")),
        ({"SLACK_BOT_TOKEN": "xoxb-test-token"}, ("SLACK_SIGNING_SECRET",)),
        (
            {"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_WEBHOOK_SECRET": "no spaces allowed"},
            ("TELEGRAM_WEBHOOK_SECRET",),
        ),
        ({"TELEGRAM_BOT_TOKEN": "123:abc", "TELEGRAM_API_URL": "api.example"}, ("http://",)),
    ],
)
async def test_run_with_bad_platform_settings_exits_2_saying_what_to_set(
    configured: Cli, env: dict[str, str], fragments: tuple[str, ...]
) -> None:
    result = await configured("run", "--port", "0", env=dict(env))

    assert result.returncode == 2
    assert_one_line_error(result, "bad configuration", *fragments)
    assert "xoxb-test-token" not in result.stderr
