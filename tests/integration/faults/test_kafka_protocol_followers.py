"""The Kafka-protocol fault suite on the compacted topics the worker's followers read
(issue 23, item 8): the control topic and the speaker registry.

The same real clients as ``test_kafka_protocol.py`` (librdkafka included) write, with
every codec, records with null header values, a header name that is not UTF-8, 10^5
headers, tombstones (keyed, on the keys the followers read, and keyless), timestamps 0
and the latest the broker accepts on a ``CreateTime`` topic
(``message.timestamp.after.max.ms`` ahead), and a transaction that aborts. They are
written twice: before the worker starts (it must start: a follower never blocks
start-up) and while it runs (the followers must keep following).

Then a sentinel on each topic, written after the poison, must be applied (the control
follower refuses an announcement of a model whose files are gone; the registry
follower rejects a record that is not an enrollment, naming its offset), every
registry record that is not a keyed tombstone must be accounted for at its offset (a
logged rejection or a dead letter), the aborted records must never be applied, and
the stream that flows meanwhile gets exactly the pipeline's events with lag 0.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

from checker import TopicTail
from clients import (
    CODECS,
    PLACEHOLDER,
    AioRecord,
    ConsoleRecord,
    JavaJob,
    JavaRecord,
    RdRecord,
    Written,
    aiokafka_produce,
    console_produce,
    java_produce,
    produce_bad_name,
    rdkafka_produce,
)
from protocol import dead_letter_spans, logged_spans
from scenario import FULL, Scenario
from test_poison_corpus import documented_reasons
from worker_harness import LABELS, REPO, SPEC, interleave, produce, wait_for

from stream.control.gate import announce
from stream.kafka.admin import describe_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from tests.support.onnx_models import make_tiny_model_dir

SPEAKER_MODEL = REPO / "models" / "zoo" / "speaker-embed" / "1"
BROKER_AFTER_MAX_MS = 3_600_000  # Kafka's default log.message.timestamp.after.max.ms
HEADER_FLOOD = 100_000


def _latest_timestamp_ms(broker: str, topic: str) -> int:
    """The latest ``CreateTime`` the broker accepts on ``topic`` now, less a minute."""
    client = KafkaClientConfig(bootstrap_servers=broker)
    (info,) = asyncio.run(describe_topics(client, [topic]))
    after = int(info.configs.get("message.timestamp.after.max.ms", BROKER_AFTER_MAX_MS))
    return min(2**63 - 1, int(time.time() * 1000) + after - 60_000)


def _poison(
    broker: str, topic: str, key: Callable[[str], bytes], tag: str, console_codecs: tuple[str, ...]
) -> list[Written]:
    """Hostile records on a compacted topic, by every client; ``key(name)`` spells a
    key the topic's follower reads (``model/scene`` or a speaker name)."""
    written: list[Written] = []
    for codec in console_codecs:
        records = [
            ConsoleRecord(key(f"{tag} con {codec}"), b"x", [("x-null", None)], "null header"),
            ConsoleRecord(key(f"{tag} con {codec} tomb"), None, [("x-h", b"1")], "tombstone"),
        ]
        written += console_produce(broker, topic, records, codec=codec)
    latest = _latest_timestamp_ms(broker, topic)
    jobs = []
    for codec in CODECS:
        records = [
            JavaRecord(
                topic,
                key(f"{tag} java {codec} flood"),
                b"x",
                what="10^5 headers",
                flood=HEADER_FLOOD,
            ),
            JavaRecord(
                topic,
                key(f"{tag} java {codec} bin"),
                b"x",
                [("x-bin", b"\xff\x00"), ("x-null", None)],
                what="binary and null headers",
            ),
            JavaRecord(
                topic, key(f"{tag} java {codec} t0"), b"x", what="timestamp 0", timestamp_ms=0
            ),
            JavaRecord(
                topic,
                key(f"{tag} java {codec} tmax"),
                b"x",
                what="latest timestamp",
                timestamp_ms=latest,
            ),
            JavaRecord(topic, key(f"{tag} java {codec} tomb"), None, what="tombstone"),
        ]
        jobs.append(JavaJob(records, {"compression.type": codec}))
        # the broker refuses a record without a key on a compacted topic, and one stamped
        # past message.timestamp.after.max.ms (with the rest of their batch)
        keyless = JavaRecord(topic, None, None, what="keyless tombstone", refused=True)
        jobs.append(JavaJob([keyless], {"compression.type": codec}))
        future = JavaRecord(
            topic,
            key(f"{tag} java {codec} tlong"),
            b"x",
            what="timestamp 2^63 - 1",
            timestamp_ms=2**63 - 1,
            refused=True,
        )
        jobs.append(JavaJob([future], {"compression.type": codec}))
    written += java_produce(broker, jobs)
    for codec in CODECS:
        records = [
            AioRecord(
                topic, key(f"{tag} aio {codec} null"), b"x", [("x-null", None)], "null header"
            ),
            AioRecord(topic, key(f"{tag} aio {codec} tomb"), None, (), "tombstone"),
        ]
        if codec == "none":
            bad = b"\xff\xfe\xc3(" + b"n" * (len(PLACEHOLDER) - 4)
            records.append(
                AioRecord(
                    topic,
                    key(f"{tag} aio badname"),
                    b"x",
                    [(PLACEHOLDER, b"1")],
                    "header name not UTF-8",
                    raw_header_name=bad,
                )
            )
        written += aiokafka_produce(broker, records, codec=codec)
        name = key(f"{tag} raw {codec} badname")
        written.append(produce_bad_name(broker, topic, name, b"x", (), codec=codec, what="name"))
    for codec in CODECS:
        records = [
            RdRecord(
                topic,
                key(f"{tag} rd {codec} null"),
                b"x",
                [("x-null", None), ("", b"empty name")],
                "null and empty-named headers",
            ),
            RdRecord(topic, key(f"{tag} rd {codec} tomb"), None, (), "tombstone"),
        ]
        written += rdkafka_produce(broker, records, codec=codec)
    return written


def _control_key(name: str) -> bytes:
    """Keys the control follower reads, and one it ignores (not ``model/speaker``: only
    the aborted transactions write it, so a leak of theirs is the latest record)."""
    keys = (b"model/scene", b"last-good/scene", b"status/" + name.encode())
    return keys[sum(name.encode()) % len(keys)]


def _speaker_key(name: str) -> bytes:
    return name.replace("/", " ").encode()


def _aborted(broker: str, topics: Topics, ghost8: bytes) -> list[Written]:
    """One transaction that aborts on each topic: applied, each would leave a trace
    (a refused ``speaker`` announcement of version 8; a rejected registry record)."""
    return java_produce(
        broker,
        [
            JavaJob(
                [
                    JavaRecord(
                        topics.control, b"model/speaker", ghost8, what="aborted announcement"
                    ),
                    JavaRecord(
                        topics.speaker_registry, b"aborted", b"{}", what="aborted enrollment"
                    ),
                ],
                {"compression.type": "lz4", "transactional.id": f"{topics.prefix}-aborted"},
                transaction="abort",
            )
        ],
    )


def _logged_at(log: str, w: Written) -> bool:
    """Whether a log line names ``w``'s offset (alone, or in a range of offsets)."""
    spans = logged_spans(log, w.topic)
    return any(p == w.partition and a <= w.offset <= b for p, a, b in spans)


def test_followers_through_every_client_and_codec(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    run = Scenario(broker, topics, tmp_path, 2 if FULL else 1, 6.0 if FULL else 4.0, "kc")
    assert run.farm is not None and run.monitor is not None
    repo = tmp_path / "repo"
    ghosts = {}
    for version, role in (("8", "speaker"), ("9", "scene")):
        ghost = make_tiny_model_dir(
            repo / "tiny" / version, spec=SPEC, labels=LABELS, version=version
        )
        ghosts[version] = announce(ghost, role=role, repo=repo).to_json()
        for f in ghost.iterdir():
            f.unlink()  # announced, never loadable: applying it is a logged refusal
    _expect_no_speaker(run)
    console = CODECS if FULL else ("lz4",)
    poison = _poison(broker, topics.control, _control_key, "pre", CODECS)
    poison += _poison(broker, topics.speaker_registry, _speaker_key, "pre", CODECS)
    aborted = _aborted(broker, topics, ghosts["8"])
    worker = run.spawn("--model-repo", str(repo), "--speaker-model", str(SPEAKER_MODEL))
    feed = interleave(run.streams)
    reasons = documented_reasons()

    def alive() -> None:
        assert worker.proc is not None
        code = worker.proc.poll()
        assert code is None, f"the worker exited {code}:\n{worker.log_tail(40)}"

    def started() -> bool:
        alive()
        return "partitions assigned: [0, 1, 2, 3, 4, 5, 6, 7]" in worker.log_text()

    dead_tail = TopicTail(broker, topics.rejected)
    try:
        with run.monitor:
            wait_for(
                started, timeout_s=180, what="a worker started on poisoned topics", farm=run.farm
            )
            produce(broker, topics, feed[: len(feed) // 3])
            run.wait_first_events()
            poison += _poison(broker, topics.control, _control_key, "live", console)
            poison += _poison(broker, topics.speaker_registry, _speaker_key, "live", console)
            aborted += _aborted(broker, topics, ghosts["8"])
            alive()
            (sentinel,) = aiokafka_produce(
                broker,
                [AioRecord(topics.speaker_registry, b"sentinel", b"{}", what="sentinel")],
                codec="none",
            )
            aiokafka_produce(
                broker, [AioRecord(topics.control, b"model/scene", ghosts["9"])], codec="none"
            )
            produce(broker, topics, feed[len(feed) // 3 :])
            traced = [
                w
                for w in poison
                if w.topic == topics.speaker_registry and not (w.key and _tombstone(w))
            ]
            last: list[str] = []

            def ready() -> bool:
                log = worker.log_text()
                dead = dead_letter_spans(dead_tail.poll())
                last[:] = [str(w) for w in traced if not (_logged_at(log, w) or w.at in dead)]
                if not re.search(r"refused scene model \S+@9 ", log):
                    last.append("the control sentinel (model/scene tiny@9) was not refused")
                if not _logged_at(log, sentinel):
                    last.append(f"the registry sentinel {sentinel} was not rejected")
                return not last

            try:
                run.check(
                    dead_letter_ok=lambda d: (
                        d["reason"] in reasons
                        and d["topic"] in (topics.control, topics.speaker_registry)
                    ),
                    ready=ready,
                    tick=alive,
                    timeout_s=600 if FULL else 180,
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nunaccounted:\n" + "\n".join(last[:40])) from None
            log = worker.log_text()
            assert not re.search(r"refused speaker model \S+@8", log), (
                "an aborted announcement was read"
            )
            leaked = [str(w) for w in aborted if _logged_at(log, w)]
            assert not leaked, f"aborted records were read: {leaked}"
            alive()
        print(
            f"[faults] kc: poison_records={len(poison)} registry_traced={len(traced)} "
            f"aborted={len(aborted)}"
        )
    finally:
        run.farm.stop_all()
        dead_tail.close()


def _expect_no_speaker(run: Scenario) -> None:
    """The registry holds no valid enrollment (only poison): every summary names the
    speaker ``unknown`` with no score. The feed is white noise, in which the speech
    detector finds no speech, so the speaker stage scores no window."""
    for summary in run.expected_summaries.values():
        summary.update(speaker="unknown", speaker_score=0.0, speaker_margin=0.0, speaker_windows=0)


def _tombstone(w: Written) -> bool:
    return w.what == "tombstone"
