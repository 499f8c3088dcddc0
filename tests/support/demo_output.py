"""What ``make demo`` prints, parsed alike from the README's excerpt and from a real run.

``scripts/demo.sh`` prints ``==> `` step lines, three ``tympan tail`` tables (live
labels, speaker decisions, end-of-stream summaries) and a report on its real recordings
(what the summaries said of each, ``models/realset/demo.py``). The README shows an abridged
run; these helpers cut both texts into steps, table headers and rows so that tests
can say the two agree (the same steps in the same order, the same column headers,
the model names and voices a run really shows) without comparing timestamps, ids,
paths or ports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DEMO_SCRIPT = REPO / "scripts" / "demo.sh"

STEP = "==> "
LIVE_LABELS = "==> live label events"
SPEAKERS = "==> speaker decisions"
SUMMARIES = "==> end-of-stream summaries"
REAL = "==> real recordings:"
DONE = "==> demo done"

_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\([^)]*\)|\$\w+")


def speaker_model(script: Path = DEMO_SCRIPT) -> str:
    """The ``name/version`` the demo pins its speaker model to (``SPEAKER_MODEL=``)."""
    found = re.search(r"^SPEAKER_MODEL=(\S+)$", script.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise AssertionError(f"{script} sets no SPEAKER_MODEL")
    return found.group(1)


def readme_excerpt(readme: Path = README) -> list[str]:
    """Lines of the README's console block that shows what ``make demo`` prints."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("What `make demo` prints")
    block = text.index("```console\n", start) + len("```console\n")
    end = text.index("```", block)
    return text[block:end].splitlines()


def steps(lines: list[str]) -> list[str]:
    """The ``==> `` step lines, in order."""
    return [line.rstrip() for line in lines if line.startswith(STEP)]


def step_shape(line: str) -> str:
    """A step line without what differs between runs: folders, run ids, ports, counts."""
    shape = re.sub(r"into \S+ \(", "into <dir> (", line)
    shape = re.sub(r"\S*demo-logs/[^/\s]+", "<logs>", shape)
    shape = re.sub(r"prefix demo-\S+", "prefix demo-<id>", shape)
    shape = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", shape)
    return re.sub(r"\d+ streams", "<n> streams", shape)


def script_steps(script: Path = DEMO_SCRIPT) -> dict[str, re.Pattern[str]]:
    """The step lines ``demo.sh`` can print (its ``echo "==> ..."``), in script order:
    each template and its pattern (a shell variable or command substitution in the
    template matches any text)."""
    steps = {}
    for template in re.findall(r'echo "(==> [^"]*)"', script.read_text(encoding="utf-8")):
        literal = _VARIABLE.split(template)
        steps[template] = re.compile(".+".join(re.escape(part) for part in literal) + "$")
    return steps


def headers(lines: list[str]) -> list[str]:
    """The tables' header lines (they start with the ``stream`` column), in order."""
    return [line.rstrip() for line in lines if re.match(r"stream\s+(window|closed)\b", line)]


@dataclass(frozen=True)
class Row:
    """One table row: the stream id and the row's whitespace-separated fields."""

    stream: str
    fields: list[str]


def stream_id(shown: str) -> str:
    """The stream id of a table's first column: ``tympan tail`` shows a stream that
    carries an ``instance`` header as ``<id>#<first 8 of the instance>``."""
    return shown.split("#", 1)[0]


def section(lines: list[str], step: str) -> list[str]:
    """The lines after the step line starting with ``step`` up to the next step line."""
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(STEP):
            if inside:
                break
            inside = line.startswith(step)
        elif inside:
            out.append(line)
    return out


def label_rows(lines: list[str]) -> list[Row]:
    """Rows of the live label table: stream, window, start_s, end_s, label, score,
    captured, lat_ms, flags, model (they print while the calls play)."""
    region = lines[lines.index(next(x for x in lines if x.startswith(LIVE_LABELS))) :]
    region = region[: region.index(next(x for x in region if x.startswith(SPEAKERS)))]
    return [
        Row(stream_id(f[0]), f)
        for f in (x.split() for x in region)
        if len(f) == 10 and f[1].isdigit()
    ]


def speaker_rows(lines: list[str]) -> list[Row]:
    """Rows of the speaker table: stream, window, start_s, end_s, speaker, score, model."""
    return [
        Row(stream_id(f[0]), f)
        for f in (x.split() for x in section(lines, SPEAKERS))
        if len(f) == 7 and f[1].isdigit()
    ]


def summary_rows(lines: list[str]) -> list[Row]:
    """Rows of the summary table: stream, closed, dur_s, wins, dominant, speaker, ..."""
    return [
        Row(stream_id(f[0]), f)
        for f in (x.split() for x in section(lines, SUMMARIES))
        if len(f) >= 6 and f[3].isdigit()
    ]


def listed_voices(lines: list[str]) -> list[str]:
    """Names in the ``tympan speakers list`` lines (``  NAME  N windows  TIME``)."""
    return [m.group(1) for x in lines if (m := re.match(r"  (\S+)\s+\d+ windows\s", x))]


def real_report(lines: list[str]) -> dict[str, list[str]]:
    """The real-recordings report, by clip: its head line (``NAME  REAL recording: ...``)
    and the indented lines under it."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in section(lines, REAL):
        if line.strip() and not line.startswith(" "):
            current = out.setdefault(line.split()[0], [])
        if line.strip():
            current.append(line.rstrip())
    return out
