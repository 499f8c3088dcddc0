"""The dashboard's security headers, bearer token and cap on live pages (a real server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream.cli import main
from stream.dashboard.server import SECURITY_HEADERS, TOKEN_COOKIE, DashboardConfig, build_app
from stream.kafka.config import KafkaClientConfig

NOWHERE = KafkaClientConfig(bootstrap_servers="127.0.0.1:1")  # the reader just retries
TOKEN = "s3cret-token"
Client = TestClient[Any, Any]


def serve(body: Callable[[Client], Awaitable[None]], **config: Any) -> None:
    async def run() -> None:
        app = build_app(DashboardConfig(client=NOWHERE, **config))
        async with TestClient(TestServer(app)) as client:
            await body(client)

    asyncio.run(run())


def _hardened(headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/api/state", "/static/app.js", "/healthz", "/nowhere"])
def test_every_response_carries_the_security_headers(path: str) -> None:
    async def body(client: Client) -> None:
        response = await client.get(path)
        assert response.status in (200, 404, 503)
        _hardened(response.headers)

    serve(body)


def test_with_a_token_nothing_is_served_without_it() -> None:
    async def body(client: Client) -> None:
        for path in ("/", "/api/state", "/events", "/static/app.js"):
            response = await client.get(path)
            assert response.status == 401, path
            _hardened(response.headers)
        assert (await client.get("/?token=wrong")).status == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert (await client.get("/api/state", headers=wrong)).status == 401
        assert (await client.get("/healthz")).status in (200, 503)  # health checks stay open

    serve(body, token=TOKEN)


def test_a_token_opens_the_page_by_cookie_and_the_api_by_bearer() -> None:
    async def body(client: Client) -> None:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/state", headers=bearer)).status == 200
        login = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        assert login.status == 303 and login.headers["Location"] == "/"
        cookie = login.cookies[TOKEN_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        page = await client.get("/", cookies={TOKEN_COOKIE: TOKEN})
        assert page.status == 200
        assert "tympan dashboard" in await page.text()

    serve(body, token=TOKEN)


def test_live_pages_are_capped() -> None:
    async def body(client: Client) -> None:
        first = await client.get("/events")
        assert first.status == 200
        await asyncio.wait_for(first.content.readline(), 5)  # it is being served
        second = await client.get("/events")
        assert second.status == 503 and second.headers["Retry-After"]
        first.close()
        for _ in range(50):  # the slot frees once the first page goes away
            await asyncio.sleep(0.1)
            probe = await client.get("/events")
            if probe.status == 200:
                probe.close()
                return
        pytest.fail("the /events slot was not freed after the page went away")

    serve(body, max_clients=1)


def test_binding_beyond_loopback_needs_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYMPAN_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard", "--host", "0.0.0.0", "--broker", "127.0.0.1:1"]) == 2
    assert "set a token" in capsys.readouterr().err
