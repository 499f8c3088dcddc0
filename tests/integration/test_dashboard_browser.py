"""``tympan dashboard`` in a real browser, fed by a real worker over the real broker.

Audio frames → ``tympan worker`` (tiny ONNX model: ``loud``/``quiet``) → result
topics → ``tympan dashboard`` → headless Chromium. The page must show each stream
with the label the worker gave it, its end, its summary and the dead letter of a
malformed frame. A screenshot is saved as ``test-artifacts/dashboard.png``
(pass or fail) so a human can look at what the browser saw.

Needs Debian's ``chromium`` and ``chromium-driver`` (scripts/setup-system.sh) and the
``selenium`` package; without them the test fails naming what is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import produce_records
from worker_harness import (
    TYMPAN,
    WorkerFarm,
    interleave,
    produce,
    read_json,
    stream_frames,
    tiny_model,
    wait_for,
)

from stream.topics import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

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


@pytest.fixture
def dashboard(broker: str, topics: Topics, tmp_path: Path) -> Iterator[str]:
    """``tympan dashboard`` as a subprocess on a free port; yields its URL."""
    port = _free_port()
    log_path = tmp_path / "dashboard.log"
    args = [
        str(TYMPAN),
        "dashboard",
        "--broker",
        broker,
        "--topic-prefix",
        topics.prefix,
        "--port",
        str(port),
        "--from-beginning",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _get(f"{url}/healthz")[0] == 200 or proc.poll() is not None,
            timeout_s=60,
            what="the dashboard's Kafka reader",
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


def _page_text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_the_page_shows_what_the_worker_says(
    broker: str, topics: Topics, dashboard: str, browser: Any, tmp_path: Path
) -> None:
    farm = WorkerFarm(broker, topics, tiny_model(tmp_path / "model"), tmp_path)
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
        return (
            all(rows[sid].startswith("loud" if loud else "quiet") for sid, loud in STREAMS.items())
            and all(summaries)
            and dead == "1"
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
    assert _page_text(driver, "#kafka") == "kafka connected"
    assert _page_text(driver, "#live") == "0"  # both streams ended
    assert "ms" in _page_text(driver, "#latency")
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, json.dumps(errors, indent=1)
