"""tympan against a broker that demands TLS, SCRAM and ACLs (``scripts/kafka.sh up --secure``).

Positive paths: every tympan client works over SASL_SSL with its own principal and no
more rights than its role needs (worker, producer, dashboard/tail, admin for
``models publish`` and ``speakers enroll --publish``). Negative paths: what an attacker
or a misconfigured client meets -- refused connections, authorization errors named
as such, and a clear one-line reason from every command instead of a hang.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from conftest import REPO, SecureBroker

TYMPAN = str(REPO / ".venv" / "bin" / "tympan")
SCENE = str(REPO / "models" / "zoo" / "scene" / "1")
COMMAND_TIMEOUT_S = 180


def run_tympan(
    args: list[str], env: dict[str, str], timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run one tympan command to its end (a hang fails the test with the timeout)."""
    return subprocess.run(
        [TYMPAN, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )


def tone_wav(path: Path, seconds: float = 3.0, sr: int = 16_000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(7)
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(path, audio.astype(np.float32), sr, subtype="PCM_16")
    return path


async def _send(client_kwargs: dict[str, object], topic: str) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **client_kwargs)
    await asyncio.wait_for(producer.start(), 30)
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"forged", key=b"model/scene"), 30)
    finally:
        await asyncio.wait_for(producer.stop(), 30)


def send_as(secure: SecureBroker, principal: str, topic: str, **overrides: str) -> None:
    asyncio.run(_send(secure.client(principal, **overrides).aiokafka_kwargs(), topic))


def end_offset(secure: SecureBroker, topic: str) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(**secure.client("tympan-admin").aiokafka_kwargs())
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            return int((await consumer.end_offsets([tp]))[tp])
        finally:
            await consumer.stop()

    return asyncio.run(read())


def assert_authorization_error(stderr: str) -> None:
    """The command said the broker refused it for lack of rights, in words."""
    text = stderr.lower()
    assert "not authorized" in text or "authorization" in text, stderr[-3000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def speak(path: Path) -> Path:
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us",
            "-w",
            str(path),
            "Thank you for calling, my name is Alex, how can I help you today? "
            "Let me look up your account and check the last three payments.",
        ],
        check=True,
    )
    return path


# -- what each role may do ---------------------------------------------------------------


def test_worker_producer_and_tail_work_over_sasl_ssl_each_with_its_principal(
    secure: SecureBroker, tmp_path: Path
) -> None:
    stream_id = f"sec-{uuid.uuid4().hex[:10]}"
    wav = tone_wav(tmp_path / f"{stream_id}.wav")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            TYMPAN,
            "worker",
            "--model",
            SCENE,
            "--app-id",
            f"tympan-worker-{uuid.uuid4().hex[:6]}",
            "--data-dir",
            str(tmp_path / "data"),
            "--web-port",
            "0",
            "--processes",
            "1",
        ],
        env=secure.env("tympan-worker"),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        sent = run_tympan(
            ["produce", "--fast", "--stream-id", stream_id, "--no-progress", str(wav)],
            secure.env("tympan-producer"),
        )
        assert sent.returncode == 0, sent.stderr
        summary = None
        deadline = time.monotonic() + 150
        while summary is None and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            tail = run_tympan(
                ["tail", "--topic", "summaries", "--json", "--from-beginning", "--idle-exit", "5"],
                secure.env("tympan-dashboard"),
            )
            assert tail.returncode == 0, tail.stderr
            for line in tail.stdout.splitlines():
                event = json.loads(line)
                if event.get("stream_id") == stream_id:
                    summary = event
        assert summary is not None, (tmp_path / "worker.log").read_text()[-3000:]
        assert summary["windows"] >= 5
        labels = run_tympan(
            ["tail", "--topic", "labels", "--json", "--from-beginning", "--idle-exit", "5"],
            secure.env("tympan-dashboard"),
        )
        mine = [json.loads(x) for x in labels.stdout.splitlines() if stream_id in x]
        assert len(mine) == summary["windows"]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def test_admin_publishes_a_model_and_the_producer_cannot(secure: SecureBroker) -> None:
    control = secure.topics.control
    before = end_offset(secure, control)
    forged = run_tympan(["models", "publish", SCENE], secure.env("tympan-producer"))
    assert forged.returncode != 0
    assert "not authorized" in forged.stderr.lower() or "authorization" in forged.stderr.lower(), (
        forged.stderr
    )
    assert end_offset(secure, control) == before
    published = run_tympan(["models", "publish", SCENE], secure.env("tympan-admin"))
    assert published.returncode == 0, published.stderr
    assert end_offset(secure, control) > before


def test_admin_publishes_an_enrollment_and_the_producer_cannot(
    secure: SecureBroker, tmp_path: Path
) -> None:
    voice = tmp_path / "agent.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us",
            "-w",
            str(voice),
            "Thank you for calling, my name is Alex, how can I help you today? "
            "Let me look up your account and check the last three payments.",
        ],
        check=True,
    )
    registry = secure.topics.speaker_registry
    before = end_offset(secure, registry)
    args = [
        "speakers",
        "--registry",
        str(tmp_path / "reg"),
        "enroll",
        f"agent-{uuid.uuid4().hex[:6]}",
        str(voice),
        "--scene-model",
        "none",
        "--publish",
    ]
    forged = run_tympan(args, secure.env("tympan-producer"))
    assert forged.returncode != 0
    assert "not authorized" in forged.stderr.lower() or "authorization" in forged.stderr.lower(), (
        forged.stderr
    )
    assert end_offset(secure, registry) == before
    enrolled = run_tympan(args, secure.env("tympan-admin"))
    assert enrolled.returncode == 0, enrolled.stderr
    assert end_offset(secure, registry) > before


@pytest.mark.parametrize("topic", ["control", "speaker_registry"])
def test_the_producer_principal_cannot_write_control_or_registry(
    secure: SecureBroker, topic: str
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        send_as(secure, "tympan-producer", getattr(secure.topics, topic))


def test_only_the_admin_writes_the_control_topic_and_workers_write_their_statuses(
    secure: SecureBroker,
) -> None:
    """A worker host must not be able to announce a model, nor replay an old signed
    announcement: its principal writes its statuses to control-status, not control."""
    control = secure.topics.control
    before = end_offset(secure, control)
    with pytest.raises(TopicAuthorizationFailedError):
        send_as(secure, "tympan-worker", control)
    assert end_offset(secure, control) == before
    status = secure.topics.control_status
    written = end_offset(secure, status)
    send_as(secure, "tympan-worker", status)
    assert end_offset(secure, status) > written
    for principal in ("tympan-producer", "tympan-dashboard"):
        with pytest.raises(TopicAuthorizationFailedError):
            send_as(secure, principal, status)


def test_the_dashboard_principal_cannot_write(secure: SecureBroker) -> None:
    for topic in (secure.topics.labels, secure.topics.audio, secure.topics.control):
        with pytest.raises(TopicAuthorizationFailedError):
            send_as(secure, "tympan-dashboard", topic)


# -- what an outsider meets ---------------------------------------------------------------


def test_an_unauthenticated_client_cannot_write_the_control_topic(secure: SecureBroker) -> None:
    control = secure.topics.control
    before = end_offset(secure, control)
    plaintext = {"bootstrap_servers": secure.bootstrap}
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_send(plaintext, control))
    tls_only = {
        "bootstrap_servers": secure.bootstrap,
        "security_protocol": "SSL",
        "ssl_context": secure.client("tympan-admin").ssl_context(),
    }
    with pytest.raises(KafkaError):
        asyncio.run(_send(tls_only, control))
    with pytest.raises(KafkaConnectionError):  # a principal that does not exist
        send_as(secure, "tympan-producer", control, TYMPAN_KAFKA_SASL_USERNAME="mallory")
    assert end_offset(secure, control) == before


def _wrong_password_commands(tmp: Path) -> dict[str, list[str]]:
    wav = tone_wav(tmp / "w.wav", seconds=1.0)
    return {
        "produce": ["produce", "--fast", "--no-progress", str(wav)],
        "tail": ["tail", "--idle-exit", "5"],
        "topics": ["topics", "list"],
        "models": ["models", "publish", SCENE],
        "worker": [
            "worker",
            "--model",
            SCENE,
            "--app-id",
            "tympan-worker-wrongpw",
            "--data-dir",
            str(tmp / "data"),
            "--web-port",
            "0",
            "--processes",
            "1",
        ],
        "speakers": [
            "speakers",
            "--registry",
            str(tmp / "reg"),
            "enroll",
            "x",
            str(speak(tmp / "v.wav")),
            "--scene-model",
            "none",
            "--publish",
        ],
        "dashboard": ["dashboard", "--port", str(free_port())],
    }


@pytest.mark.parametrize(
    "command", ["produce", "tail", "topics", "models", "worker", "speakers", "dashboard"]
)
def test_a_wrong_password_is_a_clear_error_from_every_command(
    secure: SecureBroker, tmp_path: Path, command: str
) -> None:
    principal = {
        "produce": "tympan-producer",
        "tail": "tympan-dashboard",
        "dashboard": "tympan-dashboard",
        "worker": "tympan-worker",
    }.get(command, "tympan-admin")
    args = _wrong_password_commands(tmp_path)[command]
    done = run_tympan(args, secure.env(principal, TYMPAN_KAFKA_SASL_PASSWORD="wrong-password"))
    assert done.returncode != 0, done.stdout[-2000:]
    assert "authentication failed" in done.stderr, done.stderr[-3000:]


def test_a_certificate_from_another_ca_is_refused(secure: SecureBroker, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=somebody else's CA",
            "-keyout",
            str(tmp_path / "other-ca.key"),
            "-out",
            str(other_ca),
        ],
        check=True,
        capture_output=True,
    )
    done = run_tympan(
        ["topics", "list"], secure.env("tympan-admin", TYMPAN_KAFKA_SSL_CAFILE=str(other_ca))
    )
    assert done.returncode != 0
    assert "certificate is not trusted" in done.stderr, done.stderr[-3000:]
