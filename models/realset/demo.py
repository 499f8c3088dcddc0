"""``make demo``'s real recordings: a real call and a real music track beside the rendered ones.

Every sample the demo renders (``python -m models.corpus demo``) is synthetic, like the
audio the shipped scene model was trained on. This module adds clips of the real-recording
set (``models/realset``: recorded from people and instruments, never synthesised, fetched
from Debian packages with ``apt-get download``, nothing installed) to the demo's folder,
each with the JSON sidecar the demo reads, and afterwards says what the worker's
end-of-stream summaries made of them, right or wrong::

    python -m models.realset.demo clips --out var/demo [--scale 1]
    python -m models.realset.demo report --out var/demo --summaries S.jsonl [--speakers P.jsonl]

The clips are evaluation items of the set (never trained on), cut short for the demo: the
conversation at the end of a speech turn. The package cache is the set's own
(``~/.cache/tympan/realset``): ``make real-set`` and the demo fetch each package once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.realset.build import SR, assemble, default_cache, write_clip
from models.realset.sources import Manifest, RealSetError, fetch_package, load_manifest
from stream.types import Float32


@dataclass(frozen=True, slots=True)
class DemoClip:
    """One real recording the demo plays.

    Attributes
    ----------
    name: the file stem, hence the stream id (≤ 15 characters: ``tympan tail`` shows
        ``<id>#<instance>`` whole in its 24-character column).
    item: the real-set item it is cut from (``models/realset/manifest.json``).
    what: one line saying what was recorded.
    expected: the scene label a right model gives most windows.
    telephone: played as an 8 kHz μ-law call (else 16 kHz PCM).
    max_s: the longest excerpt at scale 1.
    """

    name: str
    item: str
    what: str
    expected: str
    telephone: bool
    max_s: float


# The two smallest packages that hold a conversation and a piece the set reserves for
# evaluation (ktuberling-data 46 MB, asc-music 10 MB).
CLIPS = (
    DemoClip(
        "real-call-00",
        "conversation-de-en",
        "two native speakers, German and English words in turns (KTuberling voices)",
        "speech",
        telephone=True,
        max_s=30.0,
    ),
    DemoClip(
        "real-music-00",
        "asc-music-frontiers",
        "produced game music, 'Frontiers' (Advanced Strategic Command soundtrack)",
        "music",
        telephone=False,
        max_s=20.0,
    ),
)


def cut_at_turn(audio: Float32, turns: Sequence[Sequence[float]], max_s: float) -> Float32:
    """The audio up to the end of the last speech turn that ends by ``max_s``.

    Parameters
    ----------
    audio : np.ndarray [shape=(n,)]
        16 kHz samples.
    turns : sequence of ``[start_s, end_s]``
        Speech turns in order; none (music) cuts at ``max_s``.
    max_s : float
        The longest excerpt; the first turn is kept whole even when it is longer.

    Returns
    -------
    np.ndarray [shape=(m,)], ``m ≤ n``
    """
    ends = [float(end) for _, end in turns]
    fitting = [end for end in ends if end <= max_s]
    end_s = max(fitting) if fitting else (ends[0] if ends else max_s)
    return audio[: round(end_s * SR)]


def write_clips(manifest: Manifest, cache: Path, out: Path, *, scale: float = 1.0) -> list[Path]:
    """Fetch the packages the demo's clips need and write each clip and its sidecar."""
    items = {item.id: item for item in manifest.items}
    written = []
    for clip in CLIPS:
        item = items.get(clip.item)
        if item is None:
            raise RealSetError(f"demo clip {clip.name}: item {clip.item!r} is not in the manifest")
        names = sorted({part.source for part in item.parts})
        roots = {name: fetch_package(manifest.sources[name], cache) for name in names}
        audio, turns = assemble(item, roots)
        audio = cut_at_turn(audio, turns, clip.max_s * scale)
        path = out / f"{clip.name}.wav"
        write_clip(path, audio, phone=clip.telephone)
        sidecar = _sidecar(clip, manifest, names, audio, turns)
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False))
        written.append(path)
    return written


def _sidecar(
    clip: DemoClip, manifest: Manifest, names: list[str], audio: Float32, turns: list[list[float]]
) -> dict[str, Any]:
    duration_s = audio.size / SR
    kept = [[s, e] for s, e in turns if e <= duration_s + 1e-6]
    spans = kept or [[0.0, duration_s]]
    label = "speech" if kept else clip.expected
    segments = [{"start_s": round(s, 3), "end_s": round(e, 3), "label": label} for s, e in spans]
    return {
        "file": f"{clip.name}.wav",
        "real": True,
        "what": clip.what,
        "expected": clip.expected,
        "enrolled": False,
        "sr": 8000 if clip.telephone else SR,
        "channel": "mulaw8k" if clip.telephone else "pcm16k",
        "duration_s": round(duration_s, 3),
        "realset_item": clip.item,
        "sources": [_source(manifest, n) for n in names],
        "segments": segments,
    }


def _source(manifest: Manifest, name: str) -> dict[str, str]:
    source = manifest.sources[name]
    return {"package": name, "version": source.version, "licence": source.licence}


def describe(sidecar: dict[str, Any]) -> str:
    """``what (package version, licence), channel``: one line for a clip's sidecar."""
    sources = ", ".join(
        f"{s['package']} {s['version']}, {s['licence']}" for s in sidecar["sources"]
    )
    channel = "8 kHz μ-law call" if sidecar["channel"] == "mulaw8k" else "16 kHz PCM"
    return f"{sidecar['what']} ({sources}); {channel}, {sidecar['duration_s']:.1f} s"


def verdict(
    sidecar: dict[str, Any],
    summary: dict[str, Any] | None,
    decisions: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """What the worker's summary says about one real clip, and whether that is right.

    The share of windows per label comes from the summary's timeline. Nobody enrolled
    the real voices, so the right speaker is ``unknown``, in the summary and in every
    live speaker decision (``decisions``: the stream's speaker events); a live decision
    that names someone is said too, with its span.
    """
    if summary is None:
        return ["  no end-of-stream summary arrived: the worker said nothing about it"]
    shares: Counter[str] = Counter()
    for seg in summary.get("timeline") or []:
        shares[str(seg.get("label"))] += int(seg.get("windows") or 0)
    total = sum(shares.values()) or 1
    heard = ", ".join(f"{label} {n / total:.0%}" for label, n in shares.most_common())
    dominant = summary.get("dominant_label")
    model = summary.get("model") or {}
    right = "right" if dominant == sidecar["expected"] else "WRONG"
    lines = [
        f"  {model.get('name')}@{model.get('version')} heard {dominant} "
        f"({summary.get('windows')} windows: {heard}); expected {sidecar['expected']}: {right}"
    ]
    speaker = summary.get("speaker")
    if speaker is not None and sidecar["expected"] == "speech":
        named = "right" if speaker == "unknown" else "WRONG, a false accept"
        lines.append(f"  speaker {speaker} (neither voice is enrolled, unknown expected): {named}")
    if sidecar["expected"] == "speech":
        lines += _live_names(decisions)
    return lines


def _live_names(decisions: Sequence[dict[str, Any]]) -> list[str]:
    named = [d for d in decisions if d.get("speaker") not in (None, "unknown")]
    if not named:
        return [f"  live speaker decisions: {len(decisions)}, every one unknown: right"]
    spans = ", ".join(
        f"{d['speaker']} {float(d['start_s']):.1f}-{float(d['end_s']):.1f} s "
        f"(score {float(d['score']):.3f})"
        for d in named
    )
    return [f"  live speaker decisions named {spans}: WRONG, a false accept while it lasted"]


def report(
    out: Path, summaries: Iterable[dict[str, Any]], speakers: Iterable[dict[str, Any]] = ()
) -> list[str]:
    """Lines for each real clip in ``out``: what it is, then what the worker made of it
    (its summary event and its live speaker events)."""
    by_stream = {str(s.get("stream_id")): s for s in summaries}
    decisions: dict[str, list[dict[str, Any]]] = {}
    for event in speakers:
        decisions.setdefault(str(event.get("stream_id")), []).append(event)
    lines = []
    for clip in CLIPS:
        sidecar = json.loads((out / f"{clip.name}.json").read_text(encoding="utf-8"))
        lines.append(f"{clip.name}  REAL recording: {describe(sidecar)}")
        lines += verdict(sidecar, by_stream.get(clip.name), decisions.get(clip.name, []))
    return lines


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events ``tympan tail --json`` wrote (one JSON object per line)."""
    events = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError as exc:
            raise RealSetError(f"{path}:{n}: not a JSON event: {exc}") from exc
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.realset.demo", description=__doc__)
    parser.add_argument("command", choices=("clips", "report"))
    parser.add_argument("--summaries", type=Path, help="report: the summary events (JSON lines)")
    parser.add_argument("--speakers", type=Path, help="report: the speaker events (JSON lines)")
    parser.add_argument("--out", type=Path, required=True, help="the demo's audio folder")
    parser.add_argument("--scale", type=float, default=1.0, help="clips: length relative to 1")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="package cache")
    args = parser.parse_args(argv)
    try:
        if args.command == "clips":
            for path in write_clips(load_manifest(), args.cache, args.out, scale=args.scale):
                doc = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
                print(f"    {path.name}: {describe(doc)}")
            return 0
        if args.summaries is None:
            parser.error("report needs --summaries FILE")
        speakers = read_events(args.speakers) if args.speakers else []
        print("\n".join(report(args.out, read_events(args.summaries), speakers)))
        return 0
    except (RealSetError, OSError, ValueError, KeyError) as exc:
        print(f"models.realset.demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
