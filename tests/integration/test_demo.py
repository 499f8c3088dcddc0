"""``make demo``'s own script, end to end, on two short calls and a short track.

``scripts/demo.sh`` runs as the README's first command does, on the test broker
(``TYMPAN_DEMO_EXTERNAL_BROKER``: it neither starts nor stops one) with fewer and
shorter calls (``TYMPAN_DEMO_CALLS``/``MUSIC``/``SCALE``): render, add the real
recordings (a real call and a real music track from the real set's Debian packages),
enroll, worker, real-time produce, one RTP call through ffmpeg and ``tympan ingest rtp``,
live tail, speaker decisions, summaries and the report on the real recordings. The
assertions read what it prints, as a user would, and compare it with the README's excerpt.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.realset.demo import CLIPS
from tests.support import demo_output as demo

pytestmark = pytest.mark.slow

CALLS, MUSIC, SCALE = 2, 1, 0.5
TOOLS = ("espeak-ng", "festival", "fluidsynth", "sox", "ffmpeg")
TIMEOUT_S = 420.0


@dataclass(frozen=True)
class DemoRun:
    code: int
    lines: list[str]
    demo_dir: Path
    log_dir: Path


def _run_demo(broker: str, root: Path, run_id: str) -> DemoRun:
    demo_dir, log_root = root / "demo", root / "demo-logs"
    env = {
        **os.environ,
        "TYMPAN_BROKER": broker,
        "TYMPAN_DEMO_EXTERNAL_BROKER": "1",
        "TYMPAN_DEMO_CALLS": str(CALLS),
        "TYMPAN_DEMO_MUSIC": str(MUSIC),
        "TYMPAN_DEMO_SCALE": str(SCALE),
        "TYMPAN_DEMO_DIR": str(demo_dir),
        "TYMPAN_DEMO_LOG_DIR": str(log_root),
        "TYMPAN_DEMO_RUN_ID": run_id,
    }
    # Its own session: on a timeout the whole group (worker, producers, tails) gets
    # SIGTERM, which runs the script's cleanup, then SIGKILL.
    proc = subprocess.Popen(
        [str(demo.DEMO_SCRIPT)],
        cwd=demo.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"the demo ran past {TIMEOUT_S:.0f} s; it printed:\n{out}")
    return DemoRun(proc.returncode, out.splitlines(), demo_dir, log_root / run_id)


@pytest.fixture(scope="module")
def run(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the demo needs {', '.join(missing)} (scripts/setup-system.sh)")
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    result = _run_demo(broker, tmp_path_factory.mktemp("demo"), run_id)
    yield result
    prefix = f"demo-{run_id}"  # the run's topics, off the shared broker
    subprocess.run(
        [
            ".venv/bin/tympan",
            "topics",
            "delete",
            "--broker",
            broker,
            "--topic-prefix",
            prefix,
            "--yes",
        ],
        cwd=demo.REPO,
        capture_output=True,
        check=False,
    )


def _sidecar(run: DemoRun, name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads((run.demo_dir / f"{name}.json").read_text())
    return doc


def _output(run: DemoRun) -> str:
    return "\n".join(run.lines)


def test_the_demo_runs_to_the_end(run: DemoRun) -> None:
    assert run.code == 0, _output(run)
    streams = CALLS + MUSIC + 1 + len(CLIPS)  # rendered calls and tracks, RTP call, real ones
    assert run.lines[-1].startswith(f"==> demo done: {streams} streams; logs in "), _output(run)


def test_it_prints_the_readmes_steps_and_columns(run: DemoRun) -> None:
    excerpt = demo.readme_excerpt()
    shown = [demo.step_shape(line) for line in demo.steps(run.lines)]
    assert shown == [demo.step_shape(line) for line in demo.steps(excerpt)], _output(run)
    assert demo.headers(run.lines) == demo.headers(excerpt), _output(run)


def test_every_stream_has_one_summary_and_label_events(run: DemoRun) -> None:
    summaries = demo.summary_rows(run.lines)
    names = sorted(r.stream for r in summaries)
    files = sorted(p.stem for p in run.demo_dir.glob("*.wav"))
    assert [n for n in names if not n.startswith("rtp-call-")] == files, _output(run)
    assert sum(n.startswith("rtp-call-") for n in names) == 1, _output(run)
    dominant = {r.stream: r.fields[4] for r in summaries}
    assert dominant["music-00"] == "music" and dominant["call-00"] == "speech", _output(run)
    labelled = {r.stream for r in demo.label_rows(run.lines)}
    assert labelled == set(names), _output(run)


def test_the_speaker_lines_name_the_enrolled_voices_of_each_call(run: DemoRun) -> None:
    """call-00's agent and caller are both enrolled; its RTP replay names the same."""
    enrolled = sorted(p.name for p in (run.demo_dir / "enroll").iterdir())
    assert demo.listed_voices(run.lines) == enrolled, _output(run)
    rows = demo.speaker_rows(run.lines)
    cast = {str(_sidecar(run, "call-00")[who]) for who in ("agent", "caller")}
    for stream in ("call-00", next(r.stream for r in rows if r.stream.startswith("rtp-call-"))):
        named = {r.fields[4] for r in rows if r.stream == stream}
        assert named and all(any(v.startswith(n) for v in cast) for n in named), _output(run)
    for row in rows:  # every name shown is an enrolled voice (cut to 20 characters)
        name = row.fields[4]
        assert name == "unknown" or any(v.startswith(name) for v in enrolled), row


def test_the_real_recordings_play_and_the_report_says_what_their_summaries_say(
    run: DemoRun,
) -> None:
    """The real call and track are played like the rendered ones, and the report under
    the summaries names each REAL with its package and licence and repeats its summary's
    dominant label and speaker and its live speaker decisions, right or wrong (the models
    are not required to be right, the report to say what they said)."""
    dominant = {r.stream: r.fields[4] for r in demo.summary_rows(run.lines)}
    speaker = {r.stream: r.fields[5] for r in demo.summary_rows(run.lines)}
    reported = demo.real_report(run.lines)
    assert sorted(reported) == sorted(c.name for c in CLIPS), _output(run)
    for clip in CLIPS:
        side = _sidecar(run, clip.name)
        assert side["real"] is True and side["expected"] == clip.expected
        sources = side["sources"]
        assert isinstance(sources, list) and all(s["licence"] for s in sources), side
        head, *said = reported[clip.name]
        assert "REAL recording" in head and str(sources[0]["package"]) in head, head
        assert said[0].split(" heard ")[1].split()[0] == dominant[clip.name], _output(run)
        assert said[0].endswith(": right" if dominant[clip.name] == clip.expected else ": WRONG")
        if clip.expected == "speech":
            # the table cuts names to 16 characters
            assert said[1].split()[1].startswith(speaker[clip.name]), _output(run)
            live = {r.fields[4] for r in demo.speaker_rows(run.lines) if r.stream == clip.name}
            wrong = said[2].endswith(": WRONG, a false accept while it lasted")
            assert said[2].startswith("  live speaker decisions"), _output(run)
            assert wrong == bool(live - {"unknown"}), _output(run)
