"""The fake WhatsApp Cloud API itself (tests/fakes/whatsapp.py): Graph's answers and limits, the
24-hour window, templates, injected failures, and webhook payloads pywa accepts as Meta's."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fakes.whatsapp import WINDOW_SECONDS, FakeWhatsApp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from erm.sandbox.server import serve_app

USER = "254700123456"
OTHER = "254711000222"
VERSION = "26.0"


class Clock:
    """A settable clock for the fake's 24-hour window."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeWhatsApp]:
    async with FakeWhatsApp(clock=clock) as fake:
        yield fake


@pytest.fixture
async def graph(fake: FakeWhatsApp) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with the right token, at a versioned Graph base URL."""
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with httpx.AsyncClient(
        base_url=fake.api_url(VERSION), headers=headers, trust_env=False
    ) as client:
        yield client


def text(to: str, body: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def buttons(to: str, body: str, *choices: tuple[str, str]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in choices]
            },
        },
    }


def menu(
    to: str, *sections: list[tuple[str, str, str]], label: str = "Choose", body: str = "Pick"
) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": label,
                "sections": [
                    {
                        "title": f"Section {n}",
                        "rows": [{"id": i, "title": t, "description": d} for i, t, d in rows],
                    }
                    for n, rows in enumerate(sections)
                ],
            },
        },
    }


def template(to: str, name: str, *params: str) -> dict[str, Any]:
    components = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": "en"}, "components": components},
    }


def graph_error(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    return error


async def send(
    graph: httpx.AsyncClient, fake: FakeWhatsApp, body: dict[str, Any]
) -> httpx.Response:
    return await graph.post(f"/{fake.phone_number_id}/messages", json=body)


# -- sending -----------------------------------------------------------------------------------


async def test_a_text_is_answered_like_graph_and_recorded(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.user_message(USER, "hi")
    first = await send(graph, fake, text(f"+{USER}", "Hello *there*"))
    second = await send(graph, fake, text(USER, "Again"))

    assert first.status_code == 200
    answer = first.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"][0]["input"] == f"+{USER}"
    assert answer["contacts"][0]["wa_id"] == USER
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert wamid != second.json()["messages"][0]["id"]
    sent = fake.sent(USER)
    assert [(m.type, m.text, m.id) for m in sent] == [
        ("text", "Hello *there*", wamid),
        ("text", "Again", second.json()["messages"][0]["id"]),
    ]
    assert fake.sent(OTHER) == []
    call = fake.calls[0]
    assert (call.method, call.path, call.status, call.version) == (
        "POST",
        f"/{fake.phone_number_id}/messages",
        200,
        VERSION,
    )
    assert call.json == text(f"+{USER}", "Hello *there*")


async def test_any_graph_version_prefix_is_served(fake: FakeWhatsApp) -> None:
    fake.user_message(USER, "hi")
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with httpx.AsyncClient(headers=headers, trust_env=False) as client:
        for version in ("v18.0", "v21.0", "v26.0"):
            url = f"{fake.url}/{version}/{fake.phone_number_id}/messages"
            response = await client.post(url, json=text(USER, version))
            assert response.status_code == 200, response.text
        unversioned = await client.post(
            f"{fake.url}/{fake.phone_number_id}/messages", json=text(USER, "x")
        )
    assert unversioned.status_code == 400
    assert [m.text for m in fake.sent(USER)] == ["v18.0", "v21.0", "v26.0"]


async def test_reply_buttons_and_lists_are_recorded(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.user_message(USER, "hi")
    await send(graph, fake, buttons(USER, "Approve?", ("ok:1", "Approve"), ("no:1", "Reject")))
    await send(graph, fake, menu(USER, [("r1", "Row 1", "First"), ("r2", "Row 2", "Second")]))

    approve, pick = fake.sent(USER)
    assert (approve.type, approve.interactive_type, approve.text) == (
        "interactive",
        "button",
        "Approve?",
    )
    assert approve.buttons == [("ok:1", "Approve"), ("no:1", "Reject")]
    assert approve.button("reject") == ("no:1", "Reject")
    assert pick.rows == [("r1", "Row 1", "First"), ("r2", "Row 2", "Second")]
    assert pick.list_button == "Choose"
    assert pick.text == "Pick"


async def test_mark_as_read_and_typing_indicator(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.in1"}
    typing = {**body, "message_id": "wamid.in2", "typing_indicator": {"type": "text"}}
    assert (await send(graph, fake, body)).json() == {"success": True}
    assert (await send(graph, fake, typing)).json() == {"success": True}
    assert fake.read == ["wamid.in1", "wamid.in2"]
    assert fake.sent() == []


# -- tokens and the phone number ---------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic abc"])
async def test_a_bad_token_is_401_oauth_190(fake: FakeWhatsApp, authorization: str | None) -> None:
    fake.user_message(USER, "hi")
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(
        base_url=fake.api_url(), headers=headers, trust_env=False
    ) as client:
        post = await client.post(f"/{fake.phone_number_id}/messages", json=text(USER, "x"))
        get = await client.get(f"/{fake.phone_number_id}")
    for response in (post, get):
        assert response.status_code == 401
        error = graph_error(response)
        assert error["code"] == 190
        assert "access token" in error["message"]
    assert fake.sent() == []
    assert [c.status for c in fake.calls] == [401, 401]
    assert [c.code for c in fake.errors()] == [190, 190]


async def test_phone_number_info_for_doctor(fake: FakeWhatsApp, graph: httpx.AsyncClient) -> None:
    full = (await graph.get(f"/{fake.phone_number_id}")).json()
    assert full["id"] == fake.phone_number_id
    assert full["display_phone_number"] == fake.display_phone_number
    assert full["verified_name"] == fake.verified_name
    some = await graph.get(
        f"/{fake.phone_number_id}", params={"fields": "verified_name,display_phone_number"}
    )
    assert some.json() == {
        "verified_name": fake.verified_name,
        "display_phone_number": fake.display_phone_number,
        "id": fake.phone_number_id,
    }


async def test_another_phone_number_id_is_refused(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    response = await graph.get("/999")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100
    assert "'999'" in response.json()["error"]["message"]


# -- limits ------------------------------------------------------------------------------------

BODY = "b"


def rows(count: int, prefix: str = "r") -> list[tuple[str, str, str]]:
    return [(f"{prefix}{n}", f"Row {n}", "") for n in range(count)]


LIMITS: list[tuple[str, dict[str, Any], dict[str, Any], int]] = [
    # name, at the limit (accepted), one over (refused), Graph code
    ("text body", text(USER, "x" * 4096), text(USER, "x" * 4097), 100),
    (
        "interactive body",
        buttons(USER, "x" * 1024, ("a", "A")),
        buttons(USER, "x" * 1025, ("a", "A")),
        131009,
    ),
    (
        "button count",
        buttons(USER, BODY, ("a", "A"), ("b", "B"), ("c", "C")),
        buttons(USER, BODY, ("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")),
        131009,
    ),
    (
        "button title",
        buttons(USER, BODY, ("a", "t" * 20)),
        buttons(USER, BODY, ("a", "t" * 21)),
        131009,
    ),
    (
        "button id",
        buttons(USER, BODY, ("i" * 256, "A")),
        buttons(USER, BODY, ("i" * 257, "A")),
        131009,
    ),
    (
        "list label",
        menu(USER, rows(1), label="l" * 20),
        menu(USER, rows(1), label="l" * 21),
        131009,
    ),
    (
        "rows in all",
        menu(USER, rows(6, "a"), rows(4, "b")),
        menu(USER, rows(6, "a"), rows(5, "b")),
        131009,
    ),
    (
        "sections",
        menu(USER, *[[(f"s{n}", "Row", "")] for n in range(10)]),
        menu(USER, *[[(f"s{n}", "Row", "")] for n in range(11)]),
        131009,
    ),
    ("row title", menu(USER, [("a", "t" * 24, "")]), menu(USER, [("a", "t" * 25, "")]), 131009),
    (
        "row description",
        menu(USER, [("a", "A", "d" * 72)]),
        menu(USER, [("a", "A", "d" * 73)]),
        131009,
    ),
    ("row id", menu(USER, [("i" * 200, "A", "")]), menu(USER, [("i" * 201, "A", "")]), 131009),
]


@pytest.mark.parametrize(
    ("at_limit", "over", "code"), [case[1:] for case in LIMITS], ids=[case[0] for case in LIMITS]
)
async def test_documented_limits(
    fake: FakeWhatsApp,
    graph: httpx.AsyncClient,
    at_limit: dict[str, Any],
    over: dict[str, Any],
    code: int,
) -> None:
    fake.user_message(USER, "hi")
    accepted = await send(graph, fake, at_limit)
    assert accepted.status_code == 200, accepted.text
    refused = await send(graph, fake, over)
    assert refused.status_code == 400
    error = graph_error(refused)
    assert error["code"] == code
    assert error["error_data"]["details"]
    assert len(fake.sent(USER)) == 1


async def test_duplicate_button_ids_are_refused(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.user_message(USER, "hi")
    response = await send(graph, fake, buttons(USER, BODY, ("a", "A"), ("a", "B")))
    assert graph_error(response)["code"] == 131009


# -- the 24-hour window ------------------------------------------------------------------------


async def test_free_form_needs_the_user_to_have_written_within_24_hours(
    fake: FakeWhatsApp, graph: httpx.AsyncClient, clock: Clock
) -> None:
    never = await send(graph, fake, text(USER, "hello"))
    assert never.status_code == 400
    assert graph_error(never)["code"] == 131047
    assert "Re-engagement" in never.json()["error"]["message"]

    fake.user_message(USER, "hi")
    clock.now += WINDOW_SECONDS - 1
    assert (await send(graph, fake, text(USER, "just in time"))).status_code == 200
    assert (await send(graph, fake, buttons(USER, BODY, ("a", "A")))).status_code == 200
    clock.now += 2
    late = await send(graph, fake, buttons(USER, BODY, ("a", "A")))
    assert graph_error(late)["code"] == 131047
    assert [m.text for m in fake.sent(USER)] == ["just in time", BODY]

    fake.button_reply(USER, "a", "A", context_id=fake.sent(USER)[-1].id)  # a tap is a message
    assert (await send(graph, fake, text(USER, "back"))).status_code == 200


async def test_an_old_timestamp_opens_an_old_window(
    fake: FakeWhatsApp, graph: httpx.AsyncClient, clock: Clock
) -> None:
    fake.user_message(USER, "hi", timestamp=clock.now - WINDOW_SECONDS - 60)
    assert not fake.in_window(USER)
    assert graph_error(await send(graph, fake, text(USER, "x")))["code"] == 131047


# -- templates ---------------------------------------------------------------------------------


async def test_templates_go_out_regardless_of_the_window(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.templates["erm_code_ready"] = 2
    response = await send(graph, fake, template(USER, "erm_code_ready", "X7K2", "30 days"))
    assert response.status_code == 200, response.text
    (sent,) = fake.sent(USER)
    assert (sent.type, sent.template, sent.params, sent.language) == (
        "template",
        "erm_code_ready",
        ["X7K2", "30 days"],
        "en",
    )
    assert sent.text == "erm_code_ready(X7K2, 30 days)"
    assert sent.id == response.json()["messages"][0]["id"]


async def test_an_unknown_template_is_132001(fake: FakeWhatsApp, graph: httpx.AsyncClient) -> None:
    response = await send(graph, fake, template(USER, "nope"))
    assert response.status_code == 404
    error = graph_error(response)
    assert error["code"] == 132001
    assert "does not exist in the translation" in error["message"]


async def test_a_wrong_parameter_count_is_132000(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.add_template("erm_decision", 1)
    response = await send(graph, fake, template(USER, "erm_decision", "a", "b"))
    assert response.status_code == 400
    assert graph_error(response)["code"] == 132000
    assert fake.sent() == []


# -- injected failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "title"),
    [
        (131056, "(Business Account, Consumer Account) pair rate limit hit"),
        (130429, "Rate limit hit"),
    ],
)
async def test_fail_next_answers_rate_limits_then_recovers(
    fake: FakeWhatsApp, graph: httpx.AsyncClient, code: int, title: str
) -> None:
    fake.user_message(USER, "hi")
    fake.fail_next(code=code, times=2)
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x"}
    assert (await send(graph, fake, read)).status_code == 200  # not counted
    for _ in range(2):
        refused = await send(graph, fake, text(USER, "x"))
        assert refused.status_code == 400
        assert "retry-after" not in refused.headers
        error = graph_error(refused)
        assert (error["code"], error["message"]) == (code, f"(#{code}) {title}")
    assert (await send(graph, fake, text(USER, "x"))).status_code == 200
    assert len(fake.sent(USER)) == 1


async def test_fail_next_for_one_user_and_another_status(
    fake: FakeWhatsApp, graph: httpx.AsyncClient
) -> None:
    fake.user_message(USER, "hi")
    fake.user_message(OTHER, "hi")
    fake.fail_next(code=130429, to=OTHER, status=429)
    assert (await send(graph, fake, text(USER, "x"))).status_code == 200
    assert (await send(graph, fake, text(OTHER, "x"))).status_code == 429
    assert (await send(graph, fake, text(OTHER, "x"))).status_code == 200


# -- webhook payloads --------------------------------------------------------------------------


def test_user_message_payload_is_metas_shape(fake: FakeWhatsApp, clock: Clock) -> None:
    payload = fake.user_message(USER, "hello", name="Wanjiru", message_id="wamid.abc")
    assert payload == {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": fake.waba_id,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": fake.business_number,
                                "phone_number_id": fake.phone_number_id,
                            },
                            "contacts": [
                                {
                                    "profile": {"name": "Wanjiru"},
                                    "wa_id": USER,
                                    "user_id": fake.bsuid(USER),
                                }
                            ],
                            "messages": [
                                {
                                    "from": USER,
                                    "id": "wamid.abc",
                                    "timestamp": str(int(clock.now)),
                                    "type": "text",
                                    "text": {"body": "hello"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    assert fake.bsuid(USER).startswith("KE.")
    assert fake.in_window(USER)


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    value = payload["entry"][0]["changes"][0]["value"]
    assert isinstance(value, dict)
    return value


def test_reply_and_status_payloads(fake: FakeWhatsApp) -> None:
    button = value_of(fake.button_reply(USER, "ok:1", "Approve", context_id="wamid.out"))
    message = button["messages"][0]
    assert message["context"] == {"from": fake.business_number, "id": "wamid.out"}
    assert message["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "ok:1", "title": "Approve"},
    }
    chosen = value_of(fake.list_reply(USER, "r1", "Row 1", context_id="wamid.out"))
    assert chosen["messages"][0]["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "r1", "title": "Row 1"},
    }
    failed = value_of(fake.status("wamid.out", USER, "failed", errors=[131047]))
    (status,) = failed["statuses"]
    assert (status["id"], status["status"], status["recipient_id"]) == ("wamid.out", "failed", USER)
    assert status["errors"][0]["code"] == 131047
    assert "messages" not in failed
    delivered = value_of(fake.status("wamid.out", USER, "delivered"))["statuses"][0]
    assert "conversation" in delivered
    assert "errors" not in delivered
    ids = {value_of(fake.user_message(USER, "x"))["messages"][0]["id"] for _ in range(3)}
    assert len(ids) == 3


def test_signature_is_hmac_sha256_of_the_raw_body(fake: FakeWhatsApp) -> None:
    body = fake.body(fake.user_message(USER, "héllo ✓"))
    assert body.decode("ascii")  # non-ASCII escaped, as Meta sends it
    assert json.loads(body) == json.loads(body.decode())
    expected = hmac.new(fake.app_secret.encode(), body, hashlib.sha256).hexdigest()
    assert fake.sign(body) == f"sha256={expected}"
    assert fake.sign(body + b" ") != fake.sign(body)


@dataclass
class Received:
    method: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str]


@dataclass
class Recorder:
    """A webhook that records what it receives and answers the handshake like a good bot."""

    verify_token: str
    url: str = ""
    received: list[Received] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.received.append(
            Received(
                request.method,
                await request.body(),
                dict(request.headers),
                dict(request.query_params),
            )
        )
        query = request.query_params
        if request.method == "GET":
            if (
                query.get("hub.mode") == "subscribe"
                and query.get("hub.verify_token") == self.verify_token
            ):
                return PlainTextResponse(query.get("hub.challenge", ""))
            return PlainTextResponse("Forbidden", status_code=403)
        return PlainTextResponse("ok")


@pytest.fixture
async def recorder(fake: FakeWhatsApp) -> AsyncIterator[Recorder]:
    recorder = Recorder(fake.verify_token)
    app = Starlette(routes=[Route("/hook", recorder.endpoint, methods=["GET", "POST"])])
    async with serve_app(app) as url:
        recorder.url = f"{url}/hook"
        yield recorder


async def test_deliver_posts_the_raw_signed_body(fake: FakeWhatsApp, recorder: Recorder) -> None:
    payload = fake.user_message(USER, "hi")
    signed = await fake.deliver(recorder.url, payload)
    unsigned = await fake.deliver(recorder.url, payload, signature=False)
    forged = await fake.deliver(recorder.url, payload, signature="sha256=00")
    assert [r.status_code for r in (signed, unsigned, forged)] == [200, 200, 200]

    first, second, third = recorder.received
    assert first.body == fake.body(payload)
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-hub-signature-256"] == fake.sign(first.body)
    assert "x-hub-signature-256" not in second.headers
    assert third.headers["x-hub-signature-256"] == "sha256=00"


async def test_verify_performs_metas_handshake(fake: FakeWhatsApp, recorder: Recorder) -> None:
    good = await fake.verify(recorder.url)
    assert good.status_code == 200
    assert fake.last_challenge is not None
    assert fake.last_challenge.isdigit()
    assert good.text == fake.last_challenge
    assert recorder.received[0].query == {
        "hub.mode": "subscribe",
        "hub.verify_token": fake.verify_token,
        "hub.challenge": fake.last_challenge,
    }
    bad = await fake.verify(recorder.url, token="wrong")
    assert bad.status_code == 403


# -- pywa against the fake ---------------------------------------------------------------------

Handler = Callable[[Any, Any], Awaitable[None]]


@pytest.fixture
async def pywa_client(fake: FakeWhatsApp) -> AsyncIterator[Any]:
    """pywa's async client, its session pointed at the fake (pywa resets ``base_url``)."""
    pywa_async = pytest.importorskip("pywa_async")
    session = httpx.AsyncClient(trust_env=False)
    client = pywa_async.WhatsApp(
        phone_id=fake.phone_number_id,
        token=fake.token,
        session=session,
        verify_token=fake.verify_token,
        app_secret=fake.app_secret,
        api_version=VERSION,
    )
    session.base_url = httpx.URL(fake.api_url(VERSION))
    yield client
    await session.aclose()


async def test_pywa_sends_what_the_fake_accepts(fake: FakeWhatsApp, pywa_client: Any) -> None:
    types = pytest.importorskip("pywa_async.types")
    templates = pytest.importorskip("pywa_async.types.templates")
    fake.user_message(USER, "hi")
    fake.add_template("erm_code_ready", 2)

    await pywa_client.send_message(to=USER, text="Plain")
    await pywa_client.send_message(
        to=USER,
        text="Approve?",
        buttons=[types.Button("Approve", "ok:1"), types.Button("Reject", "no:1")],
    )
    rows = [types.SectionRow(title="Row 1", callback_data="r1", description="First")]
    await pywa_client.send_message(
        to=USER,
        text="Pick",
        buttons=types.SectionList(button_title="Choose", sections=[types.Section("S", rows)]),
    )
    await pywa_client.send_template(
        to=OTHER,
        name="erm_code_ready",
        language=templates.TemplateLanguage.ENGLISH,
        params=[templates.BodyText.params("X7K2", "30")],
    )
    await pywa_client.mark_message_as_read("wamid.in")
    number = await pywa_client.get_business_phone_number()

    plain, approve, pick = fake.sent(USER)
    assert plain.text == "Plain"
    assert approve.buttons == [("ok:1", "Approve"), ("no:1", "Reject")]
    assert pick.rows == [("r1", "Row 1", "First")]
    assert fake.sent(OTHER)[0].text == "erm_code_ready(X7K2, 30)"
    assert fake.read == ["wamid.in"]
    assert number.verified_name == fake.verified_name
    assert number.display_phone_number == fake.display_phone_number


async def test_pywa_maps_the_fakes_errors(fake: FakeWhatsApp, pywa_client: Any) -> None:
    errors = pytest.importorskip("pywa_async.errors")
    templates = pytest.importorskip("pywa_async.types.templates")
    types = pytest.importorskip("pywa_async.types")
    with pytest.raises(errors.ReEngagementMessage):
        await pywa_client.send_message(to=USER, text="outside the window")
    with pytest.raises(errors.TemplateNotExists):
        await pywa_client.send_template(
            to=USER, name="nope", language=templates.TemplateLanguage.ENGLISH
        )
    fake.user_message(USER, "hi")
    fake.fail_next(code=131056)
    with pytest.raises(errors.TooManyMessages):
        await pywa_client.send_message(to=USER, text="x")
    fake.fail_next(code=130429)
    with pytest.raises(errors.RateLimitHit):
        await pywa_client.send_message(to=USER, text="x")
    with pytest.raises(errors.InvalidParameter):  # 131009
        await pywa_client.send_message(to=USER, text="x", buttons=[types.Button("t" * 21, "a")])
    with pytest.raises(errors.WhatsAppError) as too_long:  # pywa has no class for code 100
        await pywa_client.send_message(to=USER, text="x" * 4097)
    assert too_long.value.code == 100
    fake.token = "rotated"
    with pytest.raises(errors.ExpiredAccessToken):
        await pywa_client.get_business_phone_number()


@dataclass
class PywaWebhook:
    url: str
    updates: list[Any]


@pytest.fixture
async def pywa_webhook(pywa_client: Any) -> AsyncIterator[PywaWebhook]:
    """pywa's own webhook handling behind a loopback server: what the adapter will do."""
    updates: list[Any] = []

    async def record(_: Any, update: Any) -> None:
        updates.append(update)

    for register in (
        pywa_client.on_message,
        pywa_client.on_callback_button,
        pywa_client.on_callback_selection,
        pywa_client.on_message_status,
    ):
        register(record)

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            challenge, status = await pywa_client.webhook_challenge_handler(
                vt=request.query_params.get("hub.verify_token"),
                ch=request.query_params.get("hub.challenge"),
            )
            return PlainTextResponse(challenge or "", status_code=status)
        raw = await request.body()
        refused = await pywa_client.webhook_update_validator(
            raw, request.headers.get("x-hub-signature-256")
        )
        if refused:
            return PlainTextResponse(refused[0], status_code=refused[1])
        answer, status = await pywa_client.webhook_update_handler(raw)
        return PlainTextResponse(answer, status_code=status)

    app = Starlette(routes=[Route("/webhook", endpoint, methods=["GET", "POST"])])
    async with serve_app(app) as url:
        yield PywaWebhook(f"{url}/webhook", updates)


async def test_pywa_parses_the_fakes_payloads(
    fake: FakeWhatsApp, pywa_client: Any, pywa_webhook: PywaWebhook
) -> None:
    types = pytest.importorskip("pywa_async.types")
    handshake = await fake.verify(pywa_webhook.url)
    assert (handshake.status_code, handshake.text) == (200, fake.last_challenge)
    assert (await fake.verify(pywa_webhook.url, token="wrong")).status_code == 403

    payloads = [
        fake.user_message(USER, "héllo", name="Wanjiru"),
        fake.button_reply(USER, "ok:1", "Approve", context_id="wamid.out1"),
        fake.list_reply(USER, "r1", "Row 1", context_id="wamid.out2", description="First"),
        fake.status("wamid.out1", USER, "failed", errors=[131047]),
    ]
    for payload in payloads:
        response = await fake.deliver(pywa_webhook.url, payload)
        assert response.status_code == 200, response.text

    message, button, choice, status = pywa_webhook.updates
    assert isinstance(message, types.Message)
    assert (message.text, message.from_user.wa_id, message.from_user.name) == (
        "héllo",
        USER,
        "Wanjiru",
    )
    assert message.id == value_of(payloads[0])["messages"][0]["id"]
    assert isinstance(button, types.CallbackButton)
    assert (button.data, button.title, button.reply_to_message.id) == (
        "ok:1",
        "Approve",
        "wamid.out1",
    )
    assert isinstance(choice, types.CallbackSelection)
    assert (choice.data, choice.description) == ("r1", "First")
    assert isinstance(status, types.MessageStatus)
    assert status.status == types.MessageStatusType.FAILED
    assert status.error is not None
    assert status.error.code == 131047


async def test_pywa_refuses_unsigned_or_forged_payloads(
    fake: FakeWhatsApp, pywa_webhook: PywaWebhook
) -> None:
    payload = fake.user_message(USER, "hi")
    assert (await fake.deliver(pywa_webhook.url, payload, signature=False)).status_code == 401
    forged = "sha256=" + "0" * 64
    assert (await fake.deliver(pywa_webhook.url, payload, signature=forged)).status_code == 403
    assert pywa_webhook.updates == []


async def test_a_pywa_reply_reaches_the_user(
    fake: FakeWhatsApp, pywa_client: Any, pywa_webhook: PywaWebhook
) -> None:
    await fake.deliver(pywa_webhook.url, fake.user_message(USER, "hi"))
    (message,) = pywa_webhook.updates
    await message.reply_text("Hello back")  # pywa addresses the user by business-scoped id
    assert [m.text for m in fake.sent(USER)] == ["Hello back"]
    assert fake.calls[-1].json["recipient"] == fake.bsuid(USER)


async def test_running_and_reply_to(clock: Clock) -> None:
    async with FakeWhatsApp.running(clock=clock, token="other-token") as fake:
        headers = {"Authorization": "Bearer other-token"}
        async with httpx.AsyncClient(
            base_url=fake.api_url(), headers=headers, trust_env=False
        ) as client:
            fake.user_message(USER, "hi")
            await send(client, fake, buttons(USER, BODY, ("ok:1", "Approve"), ("no:1", "Reject")))
            await send(client, fake, menu(USER, [("r1", "Row 1", "First")]))
        approve, pick = fake.sent(USER)
        tap = value_of(fake.reply_to(approve, "reject"))["messages"][0]
        assert tap["context"]["id"] == approve.id
        assert tap["interactive"]["button_reply"] == {"id": "no:1", "title": "Reject"}
        row = value_of(fake.reply_to(pick, "row 1"))["messages"][0]
        assert row["interactive"]["list_reply"] == {
            "id": "r1",
            "title": "Row 1",
            "description": "First",
        }
        with pytest.raises(LookupError):
            approve.button("maybe")
