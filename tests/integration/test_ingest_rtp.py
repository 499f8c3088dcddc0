"""``tympan ingest rtp`` end to end: real RTP senders → ingest → real broker → real worker.

Calls come from Debian's ffmpeg (PCMU, as an SBC's fork would send) and GStreamer's
``rtpL16pay`` (L16 on a dynamic payload type), directly or through a proxy that drops,
reorders and repeats packets. Each call's label events must say, window by window,
what ``tympan classify`` says of the same file (``ingest_harness.compare_labels``
states the tolerance). One ingest process and one worker serve the module.

Calls are played in real time, so the module is ``slow``: with ``TYMPAN_TEST_SCALE=ci``
(``make test``) a call is 8 s (loud, quiet, loud, quiet); with ``full`` it is 24 s.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ingest_harness import (
    IngestProcess,
    LossyProxy,
    call_wav,
    classify,
    compare_labels,
    need,
    scale,
)
from worker_harness import WorkerFarm, module_topics, read_json, tiny_model, wait_for

from stream.ingest.rtp import build_rtcp_bye, build_rtp
from stream.kafka.topics import Topics
from tests.support.ports import free_tcp_port, free_udp_ports

PATTERN = (True, False) * (6 if scale() == "full" else 2)  # 2 s each, loud first
N_PORTS = 8

pytestmark = pytest.mark.slow


@dataclass
class Rig:
    broker: str
    topics: Topics
    model_dir: Path
    wav: Path
    expected: list[str]
    ingest: IngestProcess
    farm: WorkerFarm
    first_port: int

    def port(self, i: int) -> int:
        return self.first_port + i

    def summaries(self) -> dict[str, dict[str, Any]]:
        return {s["stream_id"]: s for s in read_json(self.broker, self.topics.summaries)}

    def wait_summary(self, stream_prefix: str, timeout_s: float = 90) -> dict[str, Any]:
        found = wait_for(
            lambda: [s for sid, s in self.summaries().items() if sid.startswith(stream_prefix)],
            timeout_s=timeout_s,
            what=f"the summary of {stream_prefix}*",
            farm=self.farm,
        )
        assert len(found) == 1, found
        return found[0]

    def labels_of(self, stream_id: str) -> list[dict[str, Any]]:
        return [
            e for e in read_json(self.broker, self.topics.labels) if e["stream_id"] == stream_id
        ]


@pytest.fixture(scope="module")
def rig(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("ingest-rtp")
    with module_topics(broker, "ingest-rtp") as topics:
        model_dir = tiny_model(tmp / "model")
        wav = call_wav(tmp / "call.wav", PATTERN)
        expected = classify(model_dir, wav)
        first = free_udp_ports(N_PORTS)
        ingest = IngestProcess(
            [
                "ingest",
                "rtp",
                "--listen",
                f"127.0.0.1:{first}-{first + N_PORTS - 1}",
                "--l16",
                "96:16000",
                "--broker",
                broker,
                "--topic-prefix",
                topics.prefix,
                "--idle-timeout-s",
                "1.5",
                "--stream-id-template",
                "call-{port}-{ssrc:08x}",
                "--metrics-port",
                str(free_tcp_port()),
            ],
            tmp / "ingest.log",
        )
        ingest.metrics_port = int(ingest.args[-1])
        farm = WorkerFarm(broker, topics, model_dir, tmp)
        try:
            farm.spawn("--idle-timeout-s", "30")
            ingest.start()
            yield Rig(broker, topics, model_dir, wav, expected, ingest, farm, first)
        finally:
            rc = ingest.stop()
            farm.stop_all()
            print(ingest.log()[-3000:])
            assert rc == 0, f"tympan ingest exited with {rc}"


def ffmpeg_call(wav: Path, port: int, *extra: str) -> None:
    ffmpeg = need("ffmpeg", "ffmpeg")
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(wav), "-ar", "8000"]
    cmd += ["-acodec", "pcm_mulaw", *extra, "-f", "rtp", f"rtp://127.0.0.1:{port}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=120)


def test_ffmpeg_pcmu_call_gets_the_labels_classify_gives(rig: Rig) -> None:
    port = rig.port(0)
    ffmpeg_call(rig.wav, port, "-packetsize", "172")  # 160-byte payloads: 20 ms packets
    summary = rig.wait_summary(f"call-{port}-")
    events = rig.labels_of(summary["stream_id"])
    assert compare_labels(events, rig.expected) >= len(rig.expected) // 3
    assert not any(e["gap"] for e in events)  # loopback, no proxy: nothing lost
    assert summary["duration_s"] == pytest.approx(len(PATTERN) * 2.0, abs=0.2)


def test_ffmpeg_default_packets_as_the_issue_runs_it(rig: Rig) -> None:
    port = rig.port(1)
    ffmpeg_call(rig.wav, port)  # ffmpeg's own packet size (about 128 ms of μ-law)
    summary = rig.wait_summary(f"call-{port}-")
    assert compare_labels(rig.labels_of(summary["stream_id"]), rig.expected) > 0


def test_gstreamer_l16_call_gets_the_labels_classify_gives(rig: Rig) -> None:
    gst = need("gst-launch-1.0", "gstreamer1.0-tools gstreamer1.0-plugins-good")
    port = rig.port(2)
    pipeline = (
        f"filesrc location={rig.wav} ! wavparse ! audioconvert ! audioresample ! "
        "audio/x-raw,format=S16BE,rate=16000,channels=1 ! "
        "rtpL16pay pt=96 min-ptime=20000000 max-ptime=20000000 ! "
        f"udpsink host=127.0.0.1 port={port}"
    )
    subprocess.run(
        [gst, "-q", *pipeline.split()], check=True, timeout=120, stdout=subprocess.DEVNULL
    )
    summary = rig.wait_summary(f"call-{port}-")
    events = rig.labels_of(summary["stream_id"])
    assert events and events[0]["sr"] == 16000
    assert compare_labels(events, rig.expected) >= len(rig.expected) // 3
    assert not any(e["gap"] for e in events)


def test_loss_reorder_and_duplicates_become_gap_flags_not_a_crash(rig: Rig) -> None:
    port = rig.port(3)
    proxy = LossyProxy(("127.0.0.1", port))
    before = rig.ingest.metrics()
    try:
        ffmpeg_call(rig.wav, proxy.port, "-packetsize", "172")
    finally:
        proxy.close()
    summary = rig.wait_summary(f"call-{port}-")
    events = rig.labels_of(summary["stream_id"])
    assert proxy.counts["dropped"] > 0 and proxy.counts["swapped"] > 0 and proxy.counts["dup"] > 0
    assert any(e["gap"] for e in events), "lost packets must show as gap windows"
    assert summary["counts"]["gaps"] > 0
    compare_labels(events, rig.expected)  # what is not a gap still matches
    after = rig.ingest.metrics()
    delta = {k: after[k] - before.get(k, 0.0) for k in after if k.endswith("_total")}
    assert delta["tympan_ingest_lost_total"] >= proxy.counts["dropped"] * 0.8
    assert delta["tympan_ingest_reordered_total"] > 0
    assert delta["tympan_ingest_duplicates_total"] > 0
    assert rig.ingest.alive()


def test_garbage_datagrams_are_counted_and_bye_ends_a_call(rig: Rig) -> None:
    port = rig.port(4)
    rng = random.Random(5)
    before = rig.ingest.metrics()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in range(200):  # random bytes, truncated headers, unknown payload types
            s.sendto(rng.randbytes(rng.randrange(0, 40)), ("127.0.0.1", port))
            s.sendto(
                build_rtp(payload_type=18, seq=n, timestamp=0, ssrc=9, payload=b"x"),
                ("127.0.0.1", port),
            )
        for i in range(100):  # 2 s of quiet μ-law, then BYE long before the idle timeout
            s.sendto(
                build_rtp(payload_type=0, seq=i, timestamp=160 * i, ssrc=77, payload=b"\xff" * 160),
                ("127.0.0.1", port),
            )
        time.sleep(0.2)
        s.sendto(build_rtcp_bye(77), ("127.0.0.1", port))
    summary = rig.wait_summary(f"call-{port}-0000004d")
    assert summary["dominant_label"] == "quiet"
    after = rig.ingest.metrics()
    malformed = sum(v for k, v in after.items() if k.startswith("tympan_ingest_malformed_total"))
    malformed -= sum(v for k, v in before.items() if k.startswith("tympan_ingest_malformed_total"))
    assert malformed >= 200
    assert after['tympan_ingest_streams_ended_total{why="bye"}'] >= 1
    assert rig.ingest.alive()


def test_metrics_are_served(rig: Rig) -> None:
    m = rig.ingest.metrics()
    assert "tympan_ingest_packets_total" in m and "tympan_ingest_active_streams" in m
