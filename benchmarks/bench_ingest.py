"""Live ingest load: N concurrent RTP calls through one ``tympan ingest rtp`` process.

What a run does (on this machine, the broker included):

1. fresh topics (unique prefix); ``tympan ingest rtp`` as a subprocess, listening on
   ``N`` consecutive UDP ports (one call leg per port, as an SBC's SIPREC forks do),
   ``--chunk-ms`` frames (default 100);
2. this process sends ``N`` calls of 8 kHz PCMU in real time: one 160-byte packet
   per call every 20 ms, the calls' starts spread over the first 20 ms, from one
   thread that records the actual send time of every packet; then an RTCP BYE each;
3. CPU of the ingest process from ``/proc/<pid>/stat``, from when every call has
   started until every call has ended in the ingest (a starved process works off its
   backlog after the senders stop), divided by the call-seconds sent in that span;
   whole-machine busy time from ``/proc/stat``; ``--core-only`` measures the
   synchronous core alone (µs per packet, no sockets, no Kafka);
4. every frame on the audio topic is read back: complete (every seq of every call,
   EOS last) and its **added latency** = the frame record's Kafka ``CreateTime``
   (set when the ingest hands it to its producer) minus the send time of the packet
   that completed the frame. That is what the ingest adds beyond chunking (the
   chunk itself waits ``chunk_ms`` for its audio, which is not counted). ``CreateTime``
   has millisecond resolution. The ingest's own histogram of the same interval
   (``tympan_ingest_added_latency_ms``, microsecond clock) is reported beside it.

Goals (issue 14): CPU per call <= 0.5 % of a core; added latency <= 25 ms.

Run::

    .venv/bin/python benchmarks/bench_ingest.py --quick              # 20 calls, 5 s
    .venv/bin/python benchmarks/bench_ingest.py --calls 200 --duration-s 30

The last line is ``calls=<N> cpu_pct_per_call=<x> added_p99_ms=<y> complete=<bool>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream.ingest.rtp import build_rtcp_bye, build_rtp  # noqa: E402
from stream.kafka.admin import delete_topics, ensure_topics  # noqa: E402
from stream.kafka.config import KafkaClientConfig  # noqa: E402
from stream.kafka.topics import Topics  # noqa: E402
from stream.wire import decode_frame  # noqa: E402
from tests.support.ports import free_tcp_port, free_udp_ports  # noqa: E402

PACKET_MS = 20
PACKET_SAMPLES = 160
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    calls: int
    duration_s: float
    chunk_ms: float
    packets_sent: int
    frames_expected: int
    frames_received: int
    complete: bool
    send_late_p99_ms: float
    ingest_cpu_s: float
    steady_s: float
    cpu_pct_per_call: float
    machine_busy_pct: float
    added_p50_ms: float
    added_p99_ms: float
    added_max_ms: float
    histogram_p50_le_ms: float
    histogram_p99_le_ms: float
    lost: float
    malformed: float


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def send_calls(
    first_port: int, calls: int, n_packets: int, sent_us: np.ndarray, started: threading.Event
) -> None:
    """Real-time PCMU calls: packet ``i`` of call ``c`` at ``t0 + c*20ms/N + i*20ms``."""
    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 256, PACKET_SAMPLES, dtype=np.uint8).tobytes() for _ in range(8)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    t0 = time.perf_counter() + 0.2
    offsets = np.arange(calls) * (PACKET_MS / 1000 / calls)
    for i in range(n_packets):
        for c in range(calls):
            due = t0 + offsets[c] + i * PACKET_MS / 1000
            wait = due - time.perf_counter()
            if wait > 0.0005:
                time.sleep(wait)
            packet = build_rtp(
                payload_type=0,
                seq=(1000 + i) & 0xFFFF,
                timestamp=(5000 + i * PACKET_SAMPLES) & 0xFFFFFFFF,
                ssrc=0x10000 + c,
                payload=payloads[(i + c) % 8],
                marker=i == 0,
            )
            sock.sendto(packet, ("127.0.0.1", first_port + c))
            sent_us[c, i] = time.time_ns() // 1000
        if i == 0:
            started.set()
    for c in range(calls):
        sock.sendto(build_rtcp_bye(0x10000 + c), ("127.0.0.1", first_port + c))
    sock.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_idle(port: int, *, timeout_s: float) -> dict[str, float]:
    """Scrape ``/metrics`` until every call has ended (its BYE was processed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = scrape(port)
        if metrics.get("tympan_ingest_active_streams", 1) == 0 or time.monotonic() > deadline:
            return metrics
        time.sleep(0.5)


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float:
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), v)
        for k, v in metrics.items()
        if k.startswith(name + "_bucket")
    )
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


async def read_frames(
    client: KafkaClientConfig, topic: str, expected: int, timeout_s: float
) -> list[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, **client.aiokafka_kwargs(), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def run(args: argparse.Namespace) -> Result:
    client = KafkaClientConfig.from_environ(os.environ, bootstrap_servers=args.broker)
    topics = Topics().with_prefix(f"bench-ingest-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(client, topics))
    first = free_udp_ports(args.calls)
    metrics_port = free_tcp_port()
    cmd = [
        str(REPO / ".venv/bin/tympan"), "ingest", "rtp",
        "--listen", f"127.0.0.1:{first}-{first + args.calls - 1}",
        "--broker", client.bootstrap_servers, "--topic-prefix", topics.prefix,
        "--chunk-ms", str(args.chunk_ms), "--metrics-port", str(metrics_port),
        "--stream-id-template", "bench-{port}",
    ]  # fmt: skip
    log = Path(args.log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while "listening" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tympan ingest did not start:\n{log.read_text()}")
            time.sleep(0.2)
        n_packets = int(args.duration_s * 1000 / PACKET_MS)
        sent_us = np.zeros((args.calls, n_packets), dtype=np.int64)
        started = threading.Event()
        sender = threading.Thread(
            target=send_calls, args=(first, args.calls, n_packets, sent_us, started)
        )
        sender.start()
        started.wait()
        time.sleep(0.5)
        cpu0, busy0, t0 = cpu_s(proc.pid), machine_busy(), time.monotonic()
        sender.join()
        busy1, t1 = machine_busy(), time.monotonic()
        metrics = wait_idle(metrics_port, timeout_s=300)  # a starved ingest has a backlog
        cpu1 = cpu_s(proc.pid)  # includes working off that backlog
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    per_frame = round(args.chunk_ms / PACKET_MS)
    full_frames = n_packets // per_frame
    frames_expected = args.calls * (full_frames + 1)  # + the EOS frame
    records = asyncio.run(read_frames(client, topics.audio, frames_expected, 60))
    asyncio.run(delete_topics(client, list(topics.names())))
    seqs: dict[int, set[int]] = {}
    added = []
    by_seq: list[int] = []
    for r in records:
        frame = decode_frame(r.key, r.value, r.headers)
        c = int(frame.stream_id.split("-")[1]) - first
        seqs.setdefault(c, set()).add(frame.seq)
        if not frame.eos and frame.n_samples == per_frame * PACKET_SAMPLES:
            last_packet = (frame.seq + 1) * per_frame - 1
            added.append(r.timestamp - sent_us[c, last_packet] / 1000)
            by_seq.append(frame.seq)
    complete = len(seqs) == args.calls and all(
        s == set(range(full_frames + 1)) for s in seqs.values()
    )
    steady = t1 - t0
    lateness = np.diff(sent_us, axis=1) / 1000 - PACKET_MS
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * 100
    a = np.asarray(added) if added else np.array([np.nan])
    if os.environ.get("BENCH_INGEST_DUMP"):
        np.savez(os.environ["BENCH_INGEST_DUMP"], added=a, seq=np.asarray(by_seq))
    return Result(
        calls=args.calls,
        duration_s=args.duration_s,
        chunk_ms=args.chunk_ms,
        packets_sent=int(sent_us.size),
        frames_expected=frames_expected,
        frames_received=len(records),
        complete=complete,
        send_late_p99_ms=round(float(np.percentile(lateness, 99)), 2),
        ingest_cpu_s=round(cpu1 - cpu0, 3),
        steady_s=round(steady, 2),
        cpu_pct_per_call=round((cpu1 - cpu0) / (steady * args.calls) * 100, 4),
        machine_busy_pct=round(busy, 1),
        added_p50_ms=round(float(np.percentile(a, 50)), 2),
        added_p99_ms=round(float(np.percentile(a, 99)), 2),
        added_max_ms=round(float(np.max(a)), 2),
        histogram_p50_le_ms=histogram_quantile(metrics, "tympan_ingest_added_latency_ms", 0.5),
        histogram_p99_le_ms=histogram_quantile(metrics, "tympan_ingest_added_latency_ms", 0.99),
        lost=metrics.get("tympan_ingest_lost_total", float("nan")),
        malformed=sum(
            v for k, v in metrics.items() if k.startswith("tympan_ingest_malformed_total")
        ),
    )


def core_cost(calls: int, seconds: float) -> float:
    """CPU microseconds per packet of the synchronous core (parse, jitter buffer,
    framing; no socket, no Kafka): the part of the cost that does not depend on
    how the machine schedules the process."""
    from stream.ingest.metrics import IngestMetrics
    from stream.ingest.rtp_endpoint import RtpIngest, RtpSettings

    frames: list[Any] = []
    ingest = RtpIngest(RtpSettings(), IngestMetrics(), frames.append)
    n = int(seconds * 1000 / PACKET_MS)
    payload = bytes(range(160))
    packets = [
        [
            build_rtp(payload_type=0, seq=i, timestamp=i * 160, ssrc=c, payload=payload)
            for c in range(calls)
        ]
        for i in range(n)
    ]
    started = time.process_time()
    now = 1_700_000_000_000_000
    for i, row in enumerate(packets):
        for c, data in enumerate(row):
            ingest.datagram(data, ("127.0.0.1", 5000), 40000 + c, now + i * 20_000)
        ingest.tick(now + i * 20_000)  # the endpoint ticks every 20 ms
    ingest.close_all()
    return (time.process_time() - started) / (n * calls) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--quick", action="store_true", help="20 calls for 5 s")
    parser.add_argument("--broker", default=os.environ.get("TYMPAN_BROKER") or "127.0.0.1:9092")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--log", default="/tmp/bench-ingest.log", help="the ingest's log")
    parser.add_argument("--core-only", action="store_true", help="µs per packet, no Kafka")
    args = parser.parse_args(argv)
    if args.core_only:
        us = core_cost(args.calls, min(args.duration_s, 10.0))
        print(f"core_us_per_packet={us:.2f} core_cpu_pct_per_call={us * 50 / 1e4:.4f}")
        return 0
    if args.quick:
        args.calls, args.duration_s = 20, 5.0
    result = run(args)
    for key, value in asdict(result).items():
        print(f"{key:>22}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2))
    print(
        f"calls={result.calls} cpu_pct_per_call={result.cpu_pct_per_call} "
        f"added_p99_ms={result.added_p99_ms} complete={result.complete}"
    )
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
