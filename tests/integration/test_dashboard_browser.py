"""``tympan dashboard`` in a real browser, fed by a real worker over the real broker.

Audio frames → ``tympan worker`` (tiny ONNX model: ``loud``/``quiet``) → result
topics → ``tympan dashboard`` → headless Chromium. The page must show each stream
with the label the worker gave it, its end, its summary and the dead letter of a
malformed frame. A multi-label stream (a tiny two-tag tagger) shows its current tags
and its track's tags in its summary row. A screenshot is saved as
``test-artifacts/dashboard.png``
(pass or fail) so a human can look at what the browser saw.

A second test (no browser) checks that a dashboard started before the topics exist
waits for them instead of making the dev broker auto-create them.

The browser test needs Debian's ``chromium`` and ``chromium-driver``
(scripts/setup-system.sh) and the ``selenium`` package; without them it fails naming
what is missing (deselect it with ``-m "not browser"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import produce_records
from worker_harness import (
    SPEC,
    TYMPAN,
    WorkerFarm,
    interleave,
    produce,
    read_json,
    stream_frames,
    tiny_model,
    wait_for,
)

from stream.events import ModelRef, SpeakerEvent, WindowSpan
from stream.features.frontend import FeatureBank
from stream.inference.session import OnnxModel
from stream.kafka.admin import delete_topics, ensure_topics, list_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.wire import encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import run_sync

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without the background-networking flags Chromium phones home at start, which a
# machine without internet refuses, and the driver's connection fails with it.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
STREAMS = {"call-loud": True, "call-quiet": False}
SPEAKER = SpeakerEvent(
    "speaker-event-1",
    "call-loud",
    WindowSpan(0, 0, 16000, 16000),
    "alice",
    0.87,
    ModelRef("speaker-embed", "1"),
)
TRACK = "upload-track"  # the multi-label stream
TAGS = ("drums", "organ")
BAD_FRAME = (b"call-broken", b"\x00" * 321)  # odd length for pcm_s16le
BAD_FRAME_HEADERS = [
    ("tympan-version", b"1"),
    ("seq", b"0"),
    ("rate", b"16000"),
    ("encoding", b"pcm_s16le"),
    ("channels", b"1"),
    ("capture-us", b"1700000000000000"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def run_dashboard(broker: str, prefix: str, tmp_path: Path) -> Iterator[str]:
    """``tympan dashboard`` as a subprocess on a free port; yields its URL once the
    HTTP server answers."""
    port = _free_port()
    log_path = tmp_path / f"dashboard-{port}.log"
    args = [str(TYMPAN), "dashboard", "--broker", broker, "--topic-prefix", prefix]
    args += ["--port", str(port), "--from-beginning"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _get(f"{url}/healthz")[0] != 0 or proc.poll() is not None,
            timeout_s=60,
            what="the dashboard's HTTP server",
        )
        assert proc.poll() is None, f"tympan dashboard exited:\n{log_path.read_text()}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture
def dashboard(broker: str, topics: Topics, tmp_path: Path) -> Iterator[str]:
    """The dashboard on the test's topics, its Kafka reader connected."""
    with run_dashboard(broker, topics.prefix, tmp_path) as url:
        wait_for(
            lambda: _get(f"{url}/healthz")[0] == 200,
            timeout_s=60,
            what="the dashboard's Kafka reader",
        )
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Debian's chromedriver (no download at run time)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: run scripts/setup-system.sh "
            "(Debian packages chromium, chromium-driver) or deselect with -m 'not browser'",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser tests need selenium (pip install selenium)", pytrace=False)
    profile = tempfile.mkdtemp(prefix="tympan-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def tagged_track_events(model_dir: Path) -> tuple[list[bytes], list[bytes]]:
    """The label and summary events a worker serving a multi-label model writes for a
    loud track: the worker's own domain code (``run_sync``) on the tiny tagger, which
    gives every loud window both tags."""
    model = OnnxModel.load(model_dir)
    m = model.manifest
    pipeline = Pipeline(
        SPEC,
        ModelRef(m.name, m.version),
        m.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        thresholds=m.thresholds,
    )
    records = []
    for offset, frame in enumerate(stream_frames(TRACK, seconds=3.0, loud=True, seed=9)):
        key, value, headers = encode_frame(frame)
        records.append(Record(key, value, tuple(headers), "audio", 0, offset))
    labels, summaries, _ = run_sync(pipeline, records, lambda x: model.run(x).probabilities)
    assert all(e.tags and {t for t, _ in e.tags} == set(TAGS) for e in labels)
    return [e.to_json() for e in labels], [e.to_json() for e in summaries]


def _page_text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


@pytest.mark.browser
def test_the_page_shows_what_the_worker_says(
    broker: str, topics: Topics, dashboard: str, browser: Any, tmp_path: Path
) -> None:
    model_dir = tiny_model(tmp_path / "model")
    farm = WorkerFarm(broker, topics, model_dir, tmp_path, app_id=f"{topics.prefix}-worker")
    try:
        farm.spawn()
        frames = [
            stream_frames(sid, seconds=3.0, loud=loud, seed=i)
            for i, (sid, loud) in enumerate(STREAMS.items())
        ]
        produce(broker, topics, interleave(frames))
        produce_records(broker, topics.audio, [BAD_FRAME], headers=BAD_FRAME_HEADERS)
        wait_for(
            lambda: len(read_json(broker, topics.summaries)) >= len(STREAMS),
            timeout_s=120,
            what="the worker's summaries",
            farm=farm,
        )
        # The tiny model has no speaker head: one speaker event, as a speaker-enabled
        # worker writes it, is published directly to fill the speaker column.
        produce_records(broker, topics.speakers, [(b"call-loud", SPEAKER.to_json())])
        # A multi-label stream: the tiny worker serves a single-label model, so the
        # events a tagging worker writes are computed by the same domain code.
        tagger = make_tiny_model_dir(
            tmp_path / "tagger", spec=SPEC, labels=TAGS, name="tagger", task="multi"
        )
        track_labels, track_summaries = tagged_track_events(tagger)
        key = TRACK.encode()
        produce_records(broker, topics.labels, [(key, v) for v in track_labels])
        produce_records(broker, topics.summaries, [(key, v) for v in track_summaries])
        browser.get(dashboard)
        try:
            _check_page(browser, dashboard)
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    finally:
        farm.stop_all()


def _check_page(driver: Any, url: str) -> None:
    def shown() -> bool:
        rows = {
            sid: _page_text(driver, f'#streams tr[data-stream-id="{sid}"] td.label')
            for sid in STREAMS
        }
        summaries = [
            _page_text(driver, f'#summaries tr[data-stream-id="{sid}"]') for sid in STREAMS
        ]
        dead = _page_text(driver, '#rejected tr[data-reason="bad_payload_length"] td.count')
        speaker = _page_text(driver, '#streams tr[data-stream-id="call-loud"] td.speaker')
        track = _page_text(driver, f'#summaries tr[data-stream-id="{TRACK}"]')
        return (
            all(rows[sid].startswith("loud" if loud else "quiet") for sid, loud in STREAMS.items())
            and all(summaries)
            and dead == "1"
            and speaker == "alice"
            and bool(track)
        )

    try:
        wait_for(shown, timeout_s=30, what="the streams, summaries and dead letter on the page")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nserver state: {_get(f'{url}/api/state')[1][:3000]!r}"
        ) from exc
    for sid, loud in STREAMS.items():
        row = f'#streams tr[data-stream-id="{sid}"]'
        assert _page_text(driver, f"{row} td.status") == "ended (eos)"
        segments = driver.find_elements("css selector", f"{row} .timeline .seg")
        assert {s.get_attribute("data-label") for s in segments} == {"loud" if loud else "quiet"}
    # the multi-label stream: its last window's tags, then the track's tags with shares
    now = driver.find_elements(
        "css selector", f'#streams tr[data-stream-id="{TRACK}"] td.label .chip'
    )
    assert [c.get_attribute("data-tag") for c in now] == list(TAGS)
    verdict = f'#summaries tr[data-stream-id="{TRACK}"] td.verdict'
    chips = driver.find_elements("css selector", f"{verdict} .chip")
    assert [c.get_attribute("data-tag") for c in chips] == list(TAGS)
    assert "100%" in _page_text(driver, verdict)  # every window had both tags
    for sid in STREAMS:  # single-label rows keep their one label, no tag chips
        assert not driver.find_elements(
            "css selector", f'#streams tr[data-stream-id="{sid}"] [data-tag]'
        )
    assert _page_text(driver, "#kafka") == "kafka connected"
    assert _page_text(driver, "#live") == "0"  # both streams ended
    assert "ms" in _page_text(driver, "#latency")
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, json.dumps(errors, indent=1)


def test_the_dashboard_waits_for_topics_and_never_creates_them(broker: str, tmp_path: Path) -> None:
    """Started before any worker, it must not make the dev broker auto-create the
    result topics with default partitions (the worker would then refuse them)."""
    client = KafkaClientConfig(bootstrap_servers=broker, client_id="tympan-tests")
    topics = Topics().with_prefix(f"test-dashboard-wait-{uuid.uuid4().hex[:8]}")
    mine = set(topics.names())
    try:
        with run_dashboard(broker, topics.prefix, tmp_path) as url:
            health = wait_for(
                lambda: (h := json.loads(_get(f"{url}/healthz")[1] or b"{}")).get("error") and h,
                timeout_s=30,
                what="the dashboard to report the missing topics",
            )
            assert "waiting for topics" in health["error"]
            assert _get(f"{url}/healthz")[0] == 503
            assert not mine & set(asyncio.run(list_topics(client)))
            asyncio.run(ensure_topics(client, topics))  # e.g. the first worker starts
            wait_for(
                lambda: _get(f"{url}/healthz")[0] == 200,
                timeout_s=30,
                what="the dashboard to start reading once the topics exist",
            )
    finally:
        asyncio.run(delete_topics(client, list(mine)))
