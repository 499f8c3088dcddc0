"""Paths → streams: loading files and folders, naming streams, ``--streams N`` fan-out.

:func:`load_sources` decodes and encodes each input once (file stems as stream ids);
:func:`plan_streams` assigns inputs to streams and :func:`plan_frames` yields every
stream's frames in send order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream.audio.convert import float32_to_payload
from stream.audio.files import audio_files, load_audio
from stream.errors import AudioFileError, ConfigError
from stream.kafka.producer import interleave
from stream.produce.frames import chunk_samples, frames_from_payload, now_us
from stream.wire.frame import MAX_RATE, MIN_RATE, AudioFrame, Encoding


@dataclass(frozen=True, slots=True)
class Source:
    """One input, decoded and encoded once, ready to be cut into frames.

    ``payload`` is shared by every stream that plays this source (``--streams``).
    """

    path: str
    name: str
    payload: bytes = field(repr=False)
    sr: int
    encoding: Encoding
    channels: int = 1

    @property
    def n_samples(self) -> int:
        return len(self.payload) // (self.encoding.sample_width * self.channels)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """One stream to publish: which source, under which id, starting when."""

    stream_id: str
    source: Source
    offset_us: int = 0
    """Start delay relative to the run's start (real time spreads the streams' chunks)."""

    def frames(self, *, chunk_ms: float, start_us: int) -> Iterator[AudioFrame]:
        src = self.source
        return frames_from_payload(
            src.payload,
            src.sr,
            stream_id=self.stream_id,
            encoding=src.encoding,
            channels=src.channels,
            chunk_ms=chunk_ms,
            start_us=start_us + self.offset_us,
        )

    def n_frames(self, chunk_ms: float) -> int:
        step = chunk_samples(self.source.sr, chunk_ms)
        return max(1, -(-self.source.n_samples // step))


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """Files to publish, folders expanded to their audio files (sorted).

    Returns ``(files, problems)``: a folder without audio files is a problem (a
    sentence naming it); a missing path is kept, so loading it names it.
    """
    files: list[str] = []
    problems: list[str] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = audio_files(p)
            if not found:
                problems.append(f"folder {str(p)!r} contains no audio files (.wav, .flac, .ogg)")
            files.extend(str(f) for f in found)
        else:
            files.append(str(p))
    return files, problems


def load_source(path: str, *, name: str, encoding: Encoding, sr: int | None = None) -> Source:
    """Decode ``path`` to mono, resample to ``sr`` if given, encode as ``encoding``.

    Raises
    ------
    AudioFileError
        The file cannot be read or is empty, or its rate cannot go on the wire and no
        ``sr`` was given (``bad_rate``); the message names the path.
    """
    samples, rate = load_audio(path, sr=sr, mono=True)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(
            "bad_rate",
            f"audio file {path!r} has a sample rate of {rate} Hz, outside the wire "
            f"format's {MIN_RATE}..{MAX_RATE}; resample it with --rate",
            path=path,
        )
    payload = float32_to_payload(samples, encoding)
    return Source(path=path, name=name, payload=payload, sr=rate, encoding=Encoding(encoding))


def load_sources(
    files: Sequence[str],
    *,
    encoding: Encoding,
    sr: int | None = None,
    stream_id: str | None = None,
    stream_id_prefix: str = "",
    on_error: Callable[[AudioFileError], None] | None = None,
) -> tuple[list[Source], list[AudioFileError]]:
    """Load every file; a file that fails is reported and skipped, the others load.

    Each source's ``name`` (its base stream id) is ``stream_id`` if given (one file
    only), else ``stream_id_prefix`` + the file stem; repeated stems get ``-2``,
    ``-3``... so that two calls never share a key.
    """
    if stream_id is not None and len(files) > 1:
        raise ConfigError(
            f"--stream-id {stream_id!r} names one stream but {len(files)} files were given; "
            f"use --stream-id-prefix"
        )
    names = _unique_names(
        [stream_id if stream_id is not None else stream_id_prefix + Path(f).stem for f in files]
    )
    sources: list[Source] = []
    failures: list[AudioFileError] = []
    for path, name in zip(files, names, strict=True):
        try:
            sources.append(load_source(path, name=name, encoding=encoding, sr=sr))
        except AudioFileError as exc:
            failures.append(exc)
            if on_error is not None:
                on_error(exc)
    return sources, failures


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def plan_streams(
    sources: Sequence[Source], *, streams: int | None = None, chunk_ms: float = 100
) -> list[StreamPlan]:
    """One stream per source, or ``streams`` streams cycling over the sources.

    With ``streams`` given, stream ``j`` plays source ``j % len(sources)`` under the id
    ``<name>-<j>`` (zero-padded), and the starts are spread evenly over one chunk so
    that N concurrent streams send a steady flow instead of N records at once.
    """
    if not sources:
        return []
    count = len(sources) if streams is None else streams
    if count < len(sources):
        raise ConfigError(
            f"--streams {count} is fewer than the {len(sources)} inputs; every input needs a stream"
        )
    width = len(str(count - 1))
    chunk_us = int(chunk_ms * 1000)
    plans = []
    for j in range(count):
        source = sources[j % len(sources)]
        sid = source.name if streams is None else f"{source.name}-{j:0{width}d}"
        plans.append(StreamPlan(stream_id=sid, source=source, offset_us=j * chunk_us // count))
    return plans


def plan_frames(
    plans: Sequence[StreamPlan], *, chunk_ms: float, realtime: bool, start_us: int | None = None
) -> Iterator[AudioFrame]:
    """Every plan's frames in send order (see :func:`interleave`).

    Lazy: the run's start time (``start_us=None``: now) is taken when the first frame
    is asked for, i.e. once the producer is connected, not when the plan is made.
    """
    start = now_us() if start_us is None else start_us
    streams = [p.frames(chunk_ms=chunk_ms, start_us=start) for p in plans]
    yield from interleave(streams, realtime=realtime)
