"""What both baselines share: one plain ``httpx.AsyncClient`` to ERM, signed in once at start.

Each command makes exactly the one ERM call our bot makes for it once the item is known (the
GraphQL documents are ``erm.operations``'s, so the sandbox does the same work for both): the code
history query for ``/history ITEM N`` and the days-code mutation for ``/code days ITEM D``. Item
ids come from a JSON file the harness writes (OEM id -> ERM id), so no lookup is ever made; our bot
resolves an item once and then serves it from its cache, which the warm-up fills.

No permissions, no deduplication, no audit, no rate limits, no stored state: this is the floor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from erm import operations as ops


class BareErm:
    def __init__(self, url: str, email: str, password: str, items: dict[str, str]) -> None:
        self.url = url
        self.email = email
        self.password = password
        self.items = items
        self.http = httpx.AsyncClient(
            timeout=20.0,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )
        self.token = ""
        self.client_id = ""

    @classmethod
    def from_environment(cls) -> BareErm:
        items = json.loads(Path(os.environ["BENCH_ITEMS"]).read_text())
        return cls(
            os.environ["BENCH_ERM_URL"],
            os.environ["BENCH_ERM_EMAIL"],
            os.environ["BENCH_ERM_PASSWORD"],
            items,
        )

    async def _call(self, op: ops.Operation, variables: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"operationName": op.name, "query": op.document, "variables": variables}
        response = await self.http.post(self.url, json=body, headers=headers)
        response.raise_for_status()
        payload = response.json()
        if payload.get("errors"):
            raise RuntimeError(payload["errors"][0].get("message", "ERM error"))
        return payload["data"][op.root_field]

    async def sign_in(self) -> None:
        data = await self._call(
            ops.SIGN_IN_CLIENT,
            {"signInCredentialsInput": {"email": self.email, "password": self.password}},
        )
        self.token, self.client_id = data["accessToken"], data["_id"]

    async def history(self, oem_item_id: str, count: int) -> str:
        data = await self._call(
            ops.CODE_HISTORY,
            {
                "itemId": self.items[oem_item_id],
                "distributorId": self.client_id,
                "first": count,
                "after": None,
            },
        )
        events = [edge["node"] for edge in data["page"]["edges"]]
        lines = [
            f"{e['createdAt']} {e['codeType']} {e['codeDays']}d {e['codeDecString']}"
            for e in events
        ]
        return "\n".join([f"Last {len(events)} codes of {oem_item_id}", *lines])

    async def days_code(self, oem_item_id: str, days: int) -> str:
        data = await self._call(
            ops.GENERATE_DAYS_CODE,
            {
                "generateDaysCodeInput": {
                    "itemId": self.items[oem_item_id],
                    "codeDays": days,
                    "description": "bench baseline",
                }
            },
        )
        return f"{days}-day code for {oem_item_id}\n{data['codeDec']}"

    async def answer(self, command: str, text: str) -> str:
        """The reply to ``/history ITEM [N]`` or ``/code days ITEM D``."""
        words = text.split()
        try:
            if command == "history":
                return await self.history(words[0], int(words[1]) if len(words) > 1 else 5)
            if command == "code" and len(words) == 3 and words[0] == "days":
                return await self.days_code(words[1], int(words[2]))
        except (LookupError, ValueError, RuntimeError, httpx.HTTPError) as exc:
            return f"error: {type(exc).__name__}"
        return "usage: /history ITEM [N] | /code days ITEM DAYS"

    async def aclose(self) -> None:
        await self.http.aclose()
