"""The dashboard's HTTP side, served for real by aiohttp; Kafka is unreachable here,
so the reader keeps retrying and /healthz says so."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from stream.cli import build_parser
from stream.dashboard.server import STATE, DashboardConfig, ReaderStatus, Snapshots, build_app
from stream.dashboard.state import DashboardState
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CONFIG = DashboardConfig(
    client=KafkaClientConfig(bootstrap_servers=f"127.0.0.1:{_closed_port()}"),
    topics=Topics().with_prefix("unit"),
    push_interval_s=0.05,
)
LABEL = {
    "stream_id": "call-1",
    "window_index": 0,
    "start_s": 0.0,
    "end_s": 1.0,
    "label": "<b>speech</b>",
    "score": 0.9,
    "latency_ms": 12.0,
}


def serve(body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(CONFIG))) as client:
            await body(client)

    asyncio.run(main())


def test_page_and_assets_are_served_from_the_package() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        page = await client.get("/")
        assert page.status == 200
        html = await page.text()
        assert "/static/app.js" in html and "/static/style.css" in html
        assert "http://" not in html and "https://" not in html  # nothing from the internet
        for asset in ("app.js", "style.css"):
            response = await client.get(f"/static/{asset}")
            assert response.status == 200, asset
            assert "https://" not in await response.text()

    serve(body)


def test_api_state_is_the_snapshot() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        client.app[STATE].apply("labels", LABEL, 1_700_000_000.0)  # type: ignore[index]
        response = await client.get("/api/state")
        snap = await response.json()
        assert [s["stream_id"] for s in snap["streams"]] == ["call-1"]
        assert snap["streams"][0]["label"] == "<b>speech</b>"
        assert snap["kafka"]["connected"] is False

    serve(body)


def test_healthz_is_unhealthy_while_kafka_is_unreachable() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        for _ in range(100):
            response = await client.get("/healthz")
            health = await response.json()
            if health["error"] is not None:
                break
            await asyncio.sleep(0.1)
        assert response.status == 503
        assert health["kafka_connected"] is False
        assert health["error"]

    serve(body)


def test_events_stream_pushes_a_snapshot_on_every_change() -> None:
    async def body(client: TestClient[Any, Any]) -> None:
        response = await client.get("/events")
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await _next_snapshot(response)
        assert first["streams"] == []
        client.app[STATE].apply("labels", LABEL, 1_700_000_000.0)  # type: ignore[index]
        second = await _next_snapshot(response)
        assert second["version"] == first["version"] + 1
        assert second["streams"][0]["label"] == "<b>speech</b>"
        response.close()

    serve(body)


async def _next_snapshot(response: Any) -> dict[str, Any]:
    event = None
    while True:
        line = (await asyncio.wait_for(response.content.readline(), timeout=10)).decode()
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "snapshot":
            return dict(json.loads(line[5:]))


def test_cli_defaults_bind_to_localhost() -> None:
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port, args.from_beginning) == ("127.0.0.1", 8080, False)


def test_snapshots_are_shared_and_rate_limited() -> None:
    state = DashboardState()
    snapshots = Snapshots(state, min_interval_s=0.5)
    status = ReaderStatus(connected=True)
    t = 1_700_000_000.0
    first, body = snapshots.current(t, status)
    assert snapshots.current(t + 0.1, status) == (first, body)  # nothing changed
    state.apply("labels", LABEL, t)
    assert snapshots.current(t + 0.2, status)[0] == first  # changed, but too soon
    second, body = snapshots.current(t + 0.6, status)
    assert second == first + 1
    assert json.loads(body)["streams"][0]["stream_id"] == "call-1"
    assert json.loads(body)["kafka"] == {"connected": True, "error": None}
