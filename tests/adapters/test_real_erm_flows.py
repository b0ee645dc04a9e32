"""The whole bot against the production-shaped sandbox ERM (erm-api.md §8), as its users see it.

Each flow runs through the console adapter, the Telegram adapter (on the fake Bot API) and the
WhatsApp adapter (served on loopback, on the fake Graph API), on SQLite and on PostgreSQL: a real
``Dispatcher`` wired as ``erm-bot serve`` wires it, over a migrated database, in front of the
sandbox in process. The sandbox and the bot share one ``FakeClock``, and the sandbox's tokens live
24 hours as production's do. Every test reads the reply the way the user reads it (the console's
printed text, Telegram's visible message text, WhatsApp's text with its markup rendered) and
asserts whole lines; no reply may leak ERM's raw wording (see ``LEAKS``).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
import pytest
from fakes.telegram import FakeTelegram, User
from fakes.whatsapp import FakeWhatsApp
from sqlalchemy.ext.asyncio import AsyncEngine
from support import CountingTransport, FakeClock, TestDatabase, make_service
from whatsapp.whatsapp_rig import config_for, settle, wait_sent  # tests/adapters is on sys.path

import erm.sandbox.state as sandbox_state
from adapters.console import Console
from adapters.platform import Attached
from adapters.runtime import Runtime
from adapters.settings import Settings
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app as create_web_app
from adapters.whatsapp.app import WhatsAppAdapter
from bot.dispatch import Dispatcher
from bot.roles import Role
from bot.storage.base import migrate
from erm.client import ErmClient
from erm.sandbox import (
    ACME,
    FLEET_DEFAULT,
    MIGRATED_ITEMS,
    OPEN_ACP1_OEM_ID,
    create_app,
    seed_state,
)
from erm.sandbox.config import SandboxConfig
from erm.sandbox.errors import BadRequestError
from erm.sandbox.model import CodeEvent, CodeType, Item
from erm.sandbox.server import serve_app
from erm.sandbox.state import MIGRATED_ACTOR_NAME, SandboxState
from erm.secret_box import SecretBox
from erm.transport import ClientConfig
from erm.vault import TokenVault

TOKEN_LIFETIME = 86_400  # production's access tokens live exactly 24 h (erm-api.md §8)
OPEN_ITEM = OPEN_ACP1_OEM_ID  # FLEET_OPEN: every code limit is off
DEFAULT_ITEM = "SHSA2409000101"  # FLEET_DEFAULT (ERM's defaults: 60 s between two codes)
MIGRATED_FREE_ITEM, MIGRATED_RESET_ITEM = MIGRATED_ITEMS[0], MIGRATED_ITEMS[1]
UNKNOWN_ID = "65a0c0ffee0000000000abcd"  # an ERM id that matches nothing
LEAKS = ("Bad Request Exception", "Variable '$", "Cannot return null", "incident")
KEYPAD = re.compile(r"\*\d{3}( \d{3})*#")
HISTORY_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d  (\d+d|free|reset) +(?P<code>\S.*)")
ADDS_DAYS = "It adds days of use. Type it on the device keypad."
FOUND_IN_HISTORY = "ERM's answer was lost; this code was found in the item's history."
CONSOLE_USER = "amina"
TELEGRAM_USER = User(3101, "Amina", "amina_k", "Kamau")
WHATSAPP_USER = "254712345678"  # a wa_id: the number's digits

INFO, WARNING, ERROR = "info", "warning", "error"
_TELEGRAM_MARK = {WARNING: "⚠️ ", ERROR: "⛔ "}


# -- what a user should see ---------------------------------------------------------------------


def keypad(code: str) -> str:
    """A code as typed on the keypad: its digits only, ``*ddd ddd ... #``."""
    digits = re.sub(r"\D", "", code)
    return "*" + " ".join(digits[i : i + 3] for i in range(0, len(digits), 3)) + "#"


def minute(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M}"


def history_line(event: CodeEvent) -> str:
    """An event as ``/history`` should list it: days codes by their days, the others by type."""
    if event.code_type is CodeType.DAYSCODE:
        kind = f"{event.code_days}d"
    else:
        kind = event.code_type.value.removesuffix("CODE").lower()
    return f"{minute(event.created_at)}  {kind:<6} {keypad(event.code_dec_string)}"


@dataclass(frozen=True)
class Shown:
    """A reply as the test expects it, before a platform lays it out."""

    title: str
    fields: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = ()
    code: str | None = None
    notes: tuple[str, ...] = ()
    tone: str = INFO


def on_console(shown: Shown) -> list[str]:
    """The lines the console prints: fields aligned, the code set apart, all indented."""
    width = max((len(label) for label, _ in shown.fields), default=0)
    out = [shown.title]
    out += [f"  {label + ':':<{width + 1}} {value}" for label, value in shown.fields]
    out += [f"  {line}" for line in shown.lines]
    if shown.code is not None:
        out += ["", f"     {shown.code} ", ""]
    out += [f"  {note}" for note in shown.notes]
    return out


def on_telegram(shown: Shown) -> list[str]:
    """The visible text of the Telegram message: a mark on refusals, the code on its own line."""
    out = [_TELEGRAM_MARK.get(shown.tone, "") + shown.title, *shown.lines]
    out += [f"{label}: {value}" for label, value in shown.fields]
    if shown.code is not None:
        out += ["", shown.code]
    if shown.notes:
        out += ["", *shown.notes]
    return out


def on_whatsapp(shown: Shown) -> list[str]:
    """The visible text of the WhatsApp messages: laid out as on Telegram (render.py mirrors it),
    only the markup differs, and :func:`whatsapp_visible` renders that away."""
    return on_telegram(shown)


_MONOSPACE = re.compile(r"```(.*?)```")
# *bold*, _italic_, ~strike~: markers at word boundaries around text that neither starts nor ends
# with a space. A marker wrapped in WORD JOINERs (render.escape) touches no boundary: it shows.
_STYLED = re.compile(r"(?<![\w\u2060])([*_~])(?!\s)(.+?)(?<!\s)\1(?![\w\u2060])")


def whatsapp_visible(text: str) -> str:
    """What WhatsApp shows of a message's text: styles and monospace without their markers,
    a code inside ``` as typed (its ``*`` is no marker there), no invisible joiners."""
    parts = _MONOSPACE.split(text)  # odd parts: monospace, shown verbatim
    shown = (part if i % 2 else _STYLED.sub(r"\2", part) for i, part in enumerate(parts))
    return "".join(shown).replace("\u2060", "")


def assert_nothing_leaked(screen: list[str]) -> None:
    text = "\n".join(screen).casefold()
    leaked = [word for word in LEAKS if word.casefold() in text]
    assert not leaked, f"the user was shown {leaked}: {screen}"


# -- the channels a user types into -------------------------------------------------------------


class Channel(Protocol):
    platform: str
    user_id: str

    async def say(self, text: str) -> list[str]:
        """Send one command; the lines of the reply as the user sees them."""
        ...

    def view(self, shown: Shown) -> list[str]: ...

    def transcript(self) -> str:
        """Everything the user has been shown so far."""
        ...


@dataclass
class ConsoleChannel:
    console: Console
    out: io.StringIO
    platform: str = "console"
    user_id: str = CONSOLE_USER

    async def say(self, text: str) -> list[str]:
        start = len(self.out.getvalue())
        await self.console.run(text)
        return self.out.getvalue()[start:].removesuffix("\n").split("\n")

    def view(self, shown: Shown) -> list[str]:
        return on_console(shown)

    def transcript(self) -> str:
        return self.out.getvalue()


@dataclass
class TelegramChannel:
    fake: FakeTelegram
    clock: FakeClock
    platform: str = "telegram"
    user_id: str = str(TELEGRAM_USER.id)

    async def say(self, text: str) -> list[str]:
        # Sent "now" by the shared clock, so the bot does not take it for a stale command.
        [message] = await self.fake.send(TELEGRAM_USER, text, date=self.clock.now)
        return message.plain.split("\n")

    def view(self, shown: Shown) -> list[str]:
        return on_telegram(shown)

    def transcript(self) -> str:
        return "\n".join(message.plain for message in self.fake.sent(TELEGRAM_USER.id))


@dataclass
class WhatsAppChannel:
    fake: FakeWhatsApp
    adapter: WhatsAppAdapter
    url: str  # the bot's /whatsapp/webhook on loopback
    platform: str = "whatsapp"
    user_id: str = WHATSAPP_USER

    async def say(self, text: str) -> list[str]:
        before = len(self.fake.sent(self.user_id))
        # Typed as agents type on WhatsApp, without the slash. Meta stamps it by the wall clock,
        # as the adapter expects (it drops a redelivery older than the request keys are kept);
        # the shared clock lags the wall clock, so no code command looks stale to the core.
        message = self.fake.user_message(self.user_id, text.removeprefix("/"), name="Amina")
        assert (await self.fake.deliver(self.url, message)).status_code == 200
        await wait_sent(self.fake, self.user_id, before + 1)
        await settle(self.adapter)  # the whole answer, however many messages it takes
        sent = self.fake.sent(self.user_id)[before:]
        return whatsapp_visible("\n".join(m.text for m in sent)).split("\n")

    def view(self, shown: Shown) -> list[str]:
        return on_whatsapp(shown)

    def transcript(self) -> str:
        return whatsapp_visible("\n".join(m.text for m in self.fake.sent(self.user_id)))


@contextlib.asynccontextmanager
async def console_channel(
    dispatcher: Dispatcher, _engine: AsyncEngine, _clock: FakeClock
) -> AsyncIterator[Channel]:
    out = io.StringIO()
    console = Console(dispatcher, user=CONSOLE_USER, out=out)
    async with console.attached():
        yield ConsoleChannel(console, out)


@contextlib.asynccontextmanager
async def telegram_channel(
    dispatcher: Dispatcher, engine: AsyncEngine, clock: FakeClock
) -> AsyncIterator[Channel]:
    async with FakeTelegram() as fake:
        config = TelegramConfig(
            bot_token=fake.token, api_url=fake.api_url, poll_timeout=1.0, lock_interval=0.5
        )
        adapter = Attached(dispatcher.core, "telegram", TelegramAdapter(dispatcher, config, engine))
        await adapter.start()
        try:
            yield TelegramChannel(fake, clock)
        finally:
            await adapter.stop()


@contextlib.asynccontextmanager
async def whatsapp_channel(
    dispatcher: Dispatcher, engine: AsyncEngine, _clock: FakeClock
) -> AsyncIterator[Channel]:
    """The adapter in the bot's one web app on loopback, as the WhatsApp tests' ``serve`` does."""
    async with FakeWhatsApp() as fake:
        adapter = WhatsAppAdapter(dispatcher, config_for(fake), engine)
        attached = Attached(dispatcher.core, "whatsapp", adapter)
        async with serve_app(create_web_app([attached])) as base:
            yield WhatsAppChannel(fake, adapter, f"{base}/whatsapp/webhook")


OpenChannel = Callable[
    [Dispatcher, AsyncEngine, FakeClock], contextlib.AbstractAsyncContextManager[Channel]
]
OPEN_CHANNEL: dict[str, OpenChannel] = {
    "console": console_channel,
    "telegram": telegram_channel,
    "whatsapp": whatsapp_channel,
}


# -- the rig ------------------------------------------------------------------------------------


@dataclass
class Rig:
    channel: Channel
    dispatcher: Dispatcher
    sandbox: SandboxState
    clock: FakeClock
    calls: CountingTransport  # GraphQL requests ERM got, by operation name

    async def say(self, text: str) -> list[str]:
        screen = await self.channel.say(text)
        assert_nothing_leaked(screen)
        return screen

    def view(self, shown: Shown) -> list[str]:
        return self.channel.view(shown)

    def item(self, oem_id: str) -> Item:
        return self.sandbox.item_by_oem_id(oem_id)

    def events(self, oem_id: str) -> list[CodeEvent]:
        """The item's code events in ERM, oldest first."""
        return list(self.item(oem_id).code_generator.events)

    def newest_event(self, oem_id: str) -> CodeEvent:
        return self.events(oem_id)[-1]

    @contextlib.contextmanager
    def acme_password_changed_in_erm(self) -> Iterator[str]:
        """Someone changes acme's password in ERM, not in erm-bot; yields the new one."""
        distributor = self.sandbox.distributor_by_name(ACME.name)
        distributor.password = "changed-in-erm-only"
        try:
            yield distributor.password
        finally:
            distributor.password = ACME.password


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # see tests/adapters/telegram/conftest.py


@pytest.fixture(params=list(OPEN_CHANNEL))
async def rig(
    request: pytest.FixtureRequest,
    engine: AsyncEngine,
    database: TestDatabase,
    secret_keys: list[str],
) -> AsyncIterator[Rig]:
    """acme signed up, one agent on the chosen channel, the sandbox on the shared clock."""
    await migrate(engine)
    clock = FakeClock()
    sandbox = seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=TOKEN_LIFETIME))
    calls = CountingTransport(httpx.ASGITransport(app=create_app(sandbox)))
    settings = Settings(
        _env_file=None,
        erm_api_url="http://sandbox.test/graphql",
        erm_bot_database_url=database.url,
        erm_bot_secret_keys=",".join(secret_keys),
    )
    config = ClientConfig(url=settings.erm_api_url, total_timeout=5.0, retry_backoff=0.0)
    async with ErmClient(config, transport=calls) as client:
        vault = TokenVault(engine, SecretBox(secret_keys))
        service = make_service(client, vault, clock)
        await service.add_distributor(ACME.name, ACME.email, ACME.password)
        core = Runtime(settings, engine, vault, client, service).core()
        core.clock = lambda: datetime.fromtimestamp(clock.now, UTC)
        dispatcher = Dispatcher(core)
        async with OPEN_CHANNEL[request.param](dispatcher, engine, clock) as channel:
            await core.grants.grant(channel.platform, channel.user_id, Role.AGENT, ACME.name, "t")
            yield Rig(channel, dispatcher, sandbox, clock, calls)
            assert await core.background.drain(5.0)


# -- codes --------------------------------------------------------------------------------------


async def test_a_days_code_is_shown_keypad_ready_as_erm_recorded_it(rig: Rig) -> None:
    screen = await rig.say(f"/code days {OPEN_ITEM} 7")

    recorded = rig.newest_event(OPEN_ITEM)
    assert (recorded.code_type, recorded.code_days) == (CodeType.DAYSCODE, 7)
    assert KEYPAD.fullmatch(keypad(recorded.code_dec_string))
    assert screen == rig.view(
        Shown(
            title=f"7-day code for {OPEN_ITEM}",
            fields=(("Client", "Ruth Nakato"),),  # the title names the item and the days
            code=keypad(recorded.code_dec_string),
            notes=(ADDS_DAYS,),
        )
    )


async def test_a_code_within_the_fleets_interval_is_refused_in_plain_words(rig: Rig) -> None:
    fleet = rig.item(DEFAULT_ITEM).item_fleet
    assert fleet is not None
    assert fleet.fleet_name == FLEET_DEFAULT
    await rig.say(f"/code days {DEFAULT_ITEM} 7")
    issued = len(rig.events(DEFAULT_ITEM))

    screen = await rig.say(f"/code days {DEFAULT_ITEM} 14")

    next_code = datetime.fromtimestamp(rig.newest_event(DEFAULT_ITEM).created_at + 60, UTC)
    assert screen == rig.view(
        Shown(
            title="Too soon: ERM needs 1 min between two codes for one item.",
            lines=(
                f"Next code for {DEFAULT_ITEM} at {next_code:%H:%M} UTC (in about 1 min).",
                "Send the same command again then.",
            ),
            tone=WARNING,
        )
    )
    assert len(rig.events(DEFAULT_ITEM)) == issued


async def test_a_validation_refusal_reaches_the_user_in_erms_own_words(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    reasons = [
        "description must be shorter than or equal to 100 characters",
        "itemId must be a mongodb id",
    ]

    def refuse_like_class_validator(*_args: object) -> None:
        raise BadRequestError(reasons)

    # The state module calls the policy rule by the name it imported.
    monkeypatch.setattr(sandbox_state, "check_policy", refuse_like_class_validator)
    issued = len(rig.events(OPEN_ITEM))

    screen = await rig.say(f"/code days {OPEN_ITEM} 7")

    assert screen == rig.view(
        Shown(
            title=f"ERM refused: {reasons[0]}; {reasons[1]}",
            lines=(
                "Nothing was done.",
                "Check the command; if it is right, ask the distributor's ERM admin about it.",
            ),
            tone=WARNING,
        )
    )
    assert len(rig.events(OPEN_ITEM)) == issued


async def test_a_lost_code_answer_is_shown_once_as_found_in_history(rig: Rig) -> None:
    rig.sandbox.faults.drop_after_mutation_next = 1
    issued = len(rig.events(OPEN_ITEM))

    screen = await rig.say(f"/code days {OPEN_ITEM} 7")

    assert len(rig.events(OPEN_ITEM)) == issued + 1
    code = keypad(rig.newest_event(OPEN_ITEM).code_dec_string)
    assert screen == rig.view(
        Shown(
            title=f"7-day code for {OPEN_ITEM}",
            fields=(("Client", "Ruth Nakato"),),  # the title names the item and the days
            code=code,
            notes=(ADDS_DAYS, FOUND_IN_HISTORY),
        )
    )
    assert rig.calls.calls["GenerateDaysCode"] == 1
    assert await rig.dispatcher.core.background.drain(5.0)
    assert rig.channel.transcript().count(code) == 1


# -- history ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oem_id", "client", "code_type", "jump", "word"),
    [
        (MIGRATED_FREE_ITEM, "(AC-165156) (Isaac Njoroge)", CodeType.FREECODE, 1096, "free"),
        (MIGRATED_RESET_ITEM, "(AC-161139) (Joyce Wekesa)", CodeType.RESETCODE, 2192, "reset"),
    ],
    ids=["free", "reset"],
)
async def test_history_shows_a_migrated_code_by_its_type_in_keypad_form(
    rig: Rig, oem_id: str, client: str, code_type: CodeType, jump: int, word: str
) -> None:
    events = rig.events(oem_id)[::-1]  # newest first, as history lists them
    assert len(events) <= 10  # one page: no "Older" button to lay out
    [migrated] = [
        e for e in events if e.actor_name == MIGRATED_ACTOR_NAME and e.code_type is code_type
    ]
    # stored as production's migration stored it: decorated code, no hex, the ACP jump as days
    assert (migrated.code_hex_string, migrated.code_days) == ("--", jump)
    assert KEYPAD.fullmatch(migrated.code_dec_string)

    screen = await rig.say(f"/history {oem_id} 10")

    assert screen == rig.view(
        Shown(
            title=f"Last {len(events)} codes of {oem_id} {client}",
            lines=tuple(history_line(e) for e in events),
            notes=("Newest first. Times in UTC.",),
        )
    )
    migrated_line = f"{minute(migrated.created_at)}  {word:<6} {keypad(migrated.code_dec_string)}"
    assert migrated_line in [line.strip() for line in screen]
    assert not any(f"{jump}d" in line for line in screen)
    for line in screen:
        if match := HISTORY_LINE.search(line):
            assert KEYPAD.fullmatch(match["code"]), line


# -- unknown ids --------------------------------------------------------------------------------


async def test_a_code_for_an_unknown_id_is_answered_as_not_found(rig: Rig) -> None:
    screen = await rig.say(f"/code days {UNKNOWN_ID} 7")

    assert screen == rig.view(
        Shown(
            title=f"No item with ERM id {UNKNOWN_ID} at acme.",
            lines=("Find it by the id on the device: /items PART-OF-ID",),
            tone=WARNING,
        )
    )
    assert rig.calls.calls["GenerateDaysCode"] == 0


async def test_history_of_an_unknown_id_is_answered_as_not_found(rig: Rig) -> None:
    screen = await rig.say(f"/history {UNKNOWN_ID}")

    assert screen == rig.view(
        Shown(
            title=f"No item with ERM id {UNKNOWN_ID} at acme.",
            lines=("Find it by the id on the device: /items PART-OF-ID",),
            tone=WARNING,
        )
    )


# -- signing in ---------------------------------------------------------------------------------


async def test_an_expired_24_hour_token_is_replaced_by_one_fresh_sign_in(rig: Rig) -> None:
    await rig.say(f"/history {OPEN_ITEM} 1")
    assert rig.calls.calls["SignInClient"] == 1
    rig.clock.advance(TOKEN_LIFETIME + 1)

    screen = await rig.say(f"/code days {OPEN_ITEM} 7")

    assert screen == rig.view(
        Shown(
            title=f"7-day code for {OPEN_ITEM}",
            fields=(("Client", "Ruth Nakato"),),  # the title names the item and the days
            code=keypad(rig.newest_event(OPEN_ITEM).code_dec_string),
            notes=(ADDS_DAYS,),
        )
    )
    assert rig.calls.calls["SignInClient"] == 2
    assert rig.calls.calls["GenerateDaysCode"] == 1


async def test_a_failed_sign_in_tells_an_admin_to_update_the_credentials(rig: Rig) -> None:
    await rig.say(f"/history {OPEN_ITEM} 1")
    issued = len(rig.events(OPEN_ITEM))
    rig.clock.advance(TOKEN_LIFETIME + 1)  # the stored token is gone

    with rig.acme_password_changed_in_erm() as new_password:
        screen = await rig.say(f"/code days {OPEN_ITEM} 7")

    assert screen == rig.view(
        Shown(
            title="erm-bot could not sign in to ERM for this distributor.",
            lines=(
                "An admin must update its credentials (erm-bot distributor add NAME --replace).",
            ),
            tone=ERROR,
        )
    )
    shown = "\n".join(screen)
    assert ACME.password not in shown
    assert new_password not in shown
    assert "Traceback" not in shown
    assert len(rig.events(OPEN_ITEM)) == issued
