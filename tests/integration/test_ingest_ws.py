"""``tympan ingest ws`` end to end: a replayed Twilio Media Streams session and a plain
PCM session → ingest → real broker → real worker, labels as ``tympan classify`` says.

The ingest runs with a bearer token, as it must off loopback, so the tests also
show that a connection without it is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_harness import IngestProcess, call_wav, classify, compare_labels
from worker_harness import WorkerFarm, module_topics, read_json, tiny_model, wait_for

from stream.audio.convert import float32_to_payload
from stream.audio.files import load_audio
from stream.kafka.topics import Topics
from stream.wire import Encoding
from tests.support.ports import free_tcp_port

PATTERN = (False, True, True, False)
TOKEN = "test-token-0123456789abcdef"


@dataclass
class Rig:
    broker: str
    topics: Topics
    wav: Path
    expected: list[str]
    url: str
    farm: WorkerFarm

    def summary(self, stream_id: str) -> dict[str, Any]:
        return wait_for(
            lambda: next(
                (
                    s
                    for s in read_json(self.broker, self.topics.summaries)
                    if s["stream_id"] == stream_id
                ),
                None,
            ),
            timeout_s=90,
            what=f"the summary of {stream_id}",
            farm=self.farm,
        )

    def labels_of(self, stream_id: str) -> list[dict[str, Any]]:
        return [
            e for e in read_json(self.broker, self.topics.labels) if e["stream_id"] == stream_id
        ]


@pytest.fixture(scope="module")
def rig(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("ingest-ws")
    with module_topics(broker, "ingest-ws") as topics:
        model_dir = tiny_model(tmp / "model")
        wav = call_wav(tmp / "call.wav", PATTERN, seed=10)
        (tmp / "token").write_text(TOKEN)
        port = free_tcp_port()
        ingest = IngestProcess(
            [
                *("ingest", "ws", "--listen", f"127.0.0.1:{port}"),
                *("--token-file", str(tmp / "token")),
                *("--broker", broker, "--topic-prefix", topics.prefix),
            ],
            tmp / "ingest.log",
        )
        farm = WorkerFarm(broker, topics, model_dir, tmp)
        try:
            farm.spawn()
            ingest.start()
            yield Rig(
                broker, topics, wav, classify(model_dir, wav), f"http://127.0.0.1:{port}", farm
            )
        finally:
            rc = ingest.stop()
            farm.stop_all()
            print(ingest.log()[-3000:])
            assert rc == 0, f"tympan ingest exited with {rc}"


def twilio_session(wav: Path, stream_sid: str) -> list[str]:
    """The messages Twilio sends for one inbound call: connected, start, media..., stop."""
    y, _ = load_audio(wav, sr=8000, mono=True)
    ulaw = float32_to_payload(y, Encoding.MULAW)
    start = {
        "accountSid": "AC0",
        "streamSid": stream_sid,
        "callSid": "CA0123",
        "tracks": ["inbound"],
        "customParameters": {"queue": "support", "caller": "+15550100"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    out = [
        json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        json.dumps(
            {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": stream_sid}
        ),
    ]
    for n, i in enumerate(range(0, len(ulaw), 160)):
        media = {
            "track": "inbound",
            "chunk": str(n + 1),
            "timestamp": str(20 * n),
            "payload": base64.b64encode(ulaw[i : i + 160]).decode(),
        }
        out.append(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(n + 2),
                    "media": media,
                    "streamSid": stream_sid,
                }
            )
        )
    out.append(
        json.dumps(
            {"event": "stop", "sequenceNumber": str(len(out)), "stop": {}, "streamSid": stream_sid}
        )
    )
    return out


async def replay(
    url: str, texts: list[str], binaries: Sequence[bytes] = (), *, token: str | None = TOKEN
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        for text in texts[:1] if binaries else texts:
            await ws.send_str(text)
        for data in binaries:
            await ws.send_bytes(data)
        for text in texts[1:] if binaries else ():
            await ws.send_str(text)
        await ws.close()


def test_twilio_media_streams_session_gets_the_labels_classify_gives(rig: Rig) -> None:
    sid = "MZ00000000000000000000000000000001"
    asyncio.run(replay(f"{rig.url}/twilio", twilio_session(rig.wav, sid)))
    summary = rig.summary(sid)
    assert summary["closed_by"] == "eos"
    events = rig.labels_of(sid)
    assert compare_labels(events, rig.expected) >= len(rig.expected) // 3
    assert not any(e["gap"] for e in events)
    parameters = {"queue": "support", "caller": "+15550100"}  # customParameters of 'start'
    assert all(e["attributes"] == parameters for e in events)
    assert summary["attributes"] == parameters


def test_plain_pcm_session_gets_the_labels_classify_gives(rig: Rig) -> None:
    y, sr = load_audio(rig.wav, sr=16000, mono=True)
    pcm = float32_to_payload(y, Encoding.PCM_S16LE)
    header = json.dumps({"stream_id": "pcm-call-1", "encoding": "pcm_s16le", "sample_rate": sr})
    chunks = [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]  # 100 ms messages
    asyncio.run(replay(f"{rig.url}/pcm", [header, json.dumps({"event": "stop"})], chunks))
    events = rig.labels_of(rig.summary("pcm-call-1")["stream_id"])
    assert compare_labels(events, rig.expected) >= len(rig.expected) // 3


def test_a_connection_without_the_token_is_refused(rig: Rig) -> None:
    async def attempt() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(f"{rig.url}/twilio"):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(attempt()) == 401
