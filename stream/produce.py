"""Publishing audio as frames: files, arrays or raw PCM in, Kafka records out.

The engine behind ``tympan produce`` and the programmatic API that tests, the demo
and the benchmarks call:

* :func:`frames_from_array` / :func:`frames_from_payload` cut one stream into
  :class:`~stream.wire.AudioFrame` chunks (the payload is encoded once, frames are
  slices of it, so the per-frame work is a slice and a small dataclass);
* :func:`interleave` merges many streams into one send order: by the wall-clock time
  each chunk is complete (real time) or round-robin (as fast as possible). It is a
  single heap over the streams' iterators, not one task per stream, so a thousand
  concurrent calls cost a heap push and pop per frame;
* :func:`produce_frames` sends any iterable of frames with one batching aiokafka
  producer, pacing them in real time if asked.

:func:`load_sources` and :func:`plan_streams` turn paths into streams the way the
command line describes (file stems as stream ids, ``--streams N`` fan-out).
Nothing here reads ``os.environ`` or parses arguments (``stream/cli/produce.py`` does).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy.typing as npt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from stream.audio.convert import float32_to_payload
from stream.audio.files import audio_files, load_audio
from stream.errors import AudioFileError, BrokerError, ConfigError
from stream.kafka_client import KafkaClientConfig
from stream.wire.frame import MAX_RATE, MIN_RATE, AudioFrame, Encoding, encode_frame

log = logging.getLogger(__name__)

_SETTLE_EVERY = 1000  # delivered records are checked every this many frames
_MAX_IN_FLIGHT = 50_000  # beyond this, wait for delivery (backpressure)
_EARLY_US = 1000  # frames due within this many µs are sent without sleeping


def now_us() -> int:
    """Wall-clock time in integer microseconds since the Unix epoch (``capture-us``)."""
    return time.time_ns() // 1000


# -- one stream → frames ---------------------------------------------------------------


def chunk_samples(sr: int, chunk_ms: float) -> int:
    """Samples per channel in a chunk of ``chunk_ms`` at ``sr`` (at least 1)."""
    if chunk_ms <= 0:
        raise ConfigError(f"chunk_ms must be positive, got {chunk_ms}")
    return max(1, round(sr * chunk_ms / 1000))


def frames_from_payload(
    payload: bytes,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding = Encoding.PCM_S16LE,
    channels: int = 1,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> Iterator[AudioFrame]:
    """Cut an already encoded payload into frames; the last one carries ``eos``.

    Frame ``seq`` covers samples ``[seq*k, (seq+1)*k)`` with ``k =
    chunk_samples(sr, chunk_ms)``; its ``capture_us`` is ``start_us`` plus the offset
    of its first sample. An empty payload gives one empty end-of-stream frame.
    """
    start = now_us() if start_us is None else start_us
    encoding = Encoding(encoding)
    step = chunk_samples(sr, chunk_ms)
    block = encoding.sample_width * channels
    step_bytes = step * block
    total = len(payload) - len(payload) % block
    n_frames = max(1, -(-total // step_bytes))
    for seq in range(n_frames):
        offset = seq * step_bytes
        yield AudioFrame(
            stream_id=stream_id,
            seq=seq,
            sample_rate=sr,
            encoding=encoding,
            channels=channels,
            capture_us=start + (seq * step * 1_000_000) // sr,
            eos=seq == n_frames - 1,
            payload=payload[offset : min(offset + step_bytes, total)],
        )


def frames_from_array(
    samples: npt.ArrayLike,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding = Encoding.PCM_S16LE,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> Iterator[AudioFrame]:
    """Frames of float32 mono ``samples`` ``[shape=(n,)]`` at ``sr``, encoded as ``encoding``.

    No resampling: ``sr`` is both the samples' rate and the frames' rate (use
    :func:`stream.audio.load_audio` with ``sr=`` or :class:`StreamResampler` first).
    """
    payload = float32_to_payload(samples, encoding)
    return frames_from_payload(
        payload, sr, stream_id=stream_id, encoding=encoding, chunk_ms=chunk_ms, start_us=start_us
    )


def _due_us(frame: AudioFrame) -> int:
    """When a real source would have the whole chunk: its last sample's capture time."""
    return frame.capture_us + (frame.n_samples * 1_000_000) // frame.sample_rate


def interleave(streams: Sequence[Iterable[AudioFrame]], *, realtime: bool) -> Iterator[AudioFrame]:
    """Merge many streams' frames into one send order.

    ``realtime``: by the time each chunk is complete (``capture_us`` + duration), a
    lazy heap merge; otherwise round-robin, one frame per stream in turn.
    """
    if realtime:
        return heapq.merge(*streams, key=_due_us)
    return _round_robin(streams)


def _round_robin(streams: Sequence[Iterable[AudioFrame]]) -> Iterator[AudioFrame]:
    active = deque(iter(s) for s in streams)
    while active:
        it = active.popleft()
        frame = next(it, None)
        if frame is not None:
            yield frame
            active.append(it)


# -- frames → Kafka ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProducerTuning:
    """aiokafka producer settings for many small records.

    ``linger_ms`` lets records of many streams share a batch (one request per
    partition per few ms instead of one per frame) at the cost of that much latency.
    """

    linger_ms: int = 5
    max_batch_size: int = 512 * 1024
    max_request_size: int = 4 * 1024 * 1024
    acks: int | str = 1
    compression_type: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_size,
            "max_request_size": self.max_request_size,
            "acks": self.acks,
            "compression_type": self.compression_type,
        }


@dataclass(frozen=True, slots=True)
class ProduceStats:
    """What a produce run sent."""

    frames: int
    payload_bytes: int
    streams: int
    seconds: float
    max_lag_ms: float = 0.0
    """Real time only: the most a frame was sent after it was due (the loop fell behind)."""

    def summary(self, topic: str) -> str:
        return (
            f"produced {self.frames} frames ({_human_bytes(self.payload_bytes)}) in "
            f"{self.streams} stream(s) to {topic!r} in {self.seconds:.2f} s"
            + (f" (max lag {self.max_lag_ms:.1f} ms)" if self.max_lag_ms else "")
        )


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


async def produce_frames(
    client: KafkaClientConfig | str,
    topic: str,
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
    *,
    realtime: bool = False,
    restamp: bool | None = None,
    tuning: ProducerTuning | None = None,
    on_frame: Callable[[AudioFrame], None] | None = None,
) -> ProduceStats:
    """Send ``frames`` to ``topic``, keyed by stream id, and wait until all are delivered.

    Parameters
    ----------
    client: a :class:`KafkaClientConfig` or a bootstrap string (``"host:port"``).
    topic: the audio topic (``Topics().audio``).
    frames: in send order (see :func:`interleave`); a sync or async iterable.
    realtime: sleep until each frame is due (``capture_us`` + its duration).
    restamp: set ``capture_us`` to the send time; default ``not realtime`` (the
        "as fast as possible" mode has no meaningful capture times of its own).
    tuning: producer batching settings.
    on_frame: called after each frame is handed to the producer (progress bars).

    Raises
    ------
    BrokerError
        The broker cannot be reached or refuses records; the message names it.
    FrameError
        A frame that is not valid on the wire (see :func:`encode_frame`).
    """
    config = KafkaClientConfig(bootstrap_servers=client) if isinstance(client, str) else client
    restamp = (not realtime) if restamp is None else restamp
    producer = AIOKafkaProducer(**config.aiokafka_kwargs(), **(tuning or ProducerTuning()).kwargs())
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise BrokerError(
            f"cannot connect a producer to {config.bootstrap_servers}: {exc!r} "
            f"(is the broker up? scripts/kafka.sh up)"
        ) from exc
    try:
        return await _send_all(producer, topic, _aiter(frames), realtime, restamp, on_frame)
    except KafkaError as exc:
        raise BrokerError(
            f"sending to topic {topic!r} on {config.bootstrap_servers} failed: {exc!r}"
        ) from exc
    finally:
        await producer.stop()


async def _send_all(
    producer: AIOKafkaProducer,
    topic: str,
    frames: AsyncIterator[AudioFrame],
    realtime: bool,
    restamp: bool,
    on_frame: Callable[[AudioFrame], None] | None,
) -> ProduceStats:
    started = time.perf_counter()
    pending: deque[asyncio.Future[Any]] = deque()
    # Kafka's default (murmur2) partitioning, computed once per stream rather than per
    # record: the same partition a Java or Go producer picks for the same key.
    partitioner = DefaultPartitioner()
    partitions = sorted(await producer.partitions_for(topic))
    partition_of: dict[str, int] = {}
    unfinished: dict[str, AudioFrame] = {}  # last frame of each stream not yet at EOS
    n_frames = n_bytes = 0
    max_lag_us = 0
    try:
        async for frame in frames:
            if realtime:
                lag_us = now_us() - _due_us(frame)
                if lag_us < -_EARLY_US:
                    await asyncio.sleep(-lag_us / 1e6)
                else:
                    max_lag_us = max(max_lag_us, lag_us)
            key, value, headers = encode_frame(frame, capture_us=now_us() if restamp else None)
            partition = partition_of.get(frame.stream_id)
            if partition is None:
                partition = partition_of[frame.stream_id] = partitioner(key, partitions, partitions)
            pending.append(
                await producer.send(
                    topic, value=value, key=key, partition=partition, headers=headers
                )
            )
            if frame.eos:
                unfinished.pop(frame.stream_id, None)
            else:
                unfinished[frame.stream_id] = frame
            n_frames += 1
            n_bytes += len(value)
            if on_frame is not None:
                on_frame(frame)
            if n_frames % _SETTLE_EVERY == 0:
                await _settle(pending)
    except asyncio.CancelledError:  # Ctrl-C: end the streams cleanly before leaving
        await _end_streams(producer, topic, list(unfinished.values()))
        raise
    await producer.flush()
    await asyncio.gather(*pending)
    return ProduceStats(
        frames=n_frames,
        payload_bytes=n_bytes,
        streams=len(partition_of),
        seconds=time.perf_counter() - started,
        max_lag_ms=max_lag_us / 1000,
    )


async def _end_streams(producer: AIOKafkaProducer, topic: str, last: list[AudioFrame]) -> None:
    """Send an empty end-of-stream frame after each of ``last`` (interrupted streams).

    Without it the worker would hold those streams' state until its idle timeout.
    """
    if not last:
        return
    log.warning("interrupted: sending end-of-stream for %d unfinished stream(s)", len(last))
    for frame in last:
        eos = replace(frame, seq=frame.seq + 1, eos=True, payload=b"", capture_us=_due_us(frame))
        key, value, headers = encode_frame(eos)
        await producer.send(topic, value=value, key=key, headers=headers)
    await producer.flush()


async def _settle(pending: deque[asyncio.Future[Any]]) -> None:
    """Drop delivered records from the front of ``pending`` (raising a failed one's error);
    wait for the oldest only when too many are in flight, so pacing rarely stalls."""
    while pending and pending[0].done():
        pending.popleft().result()
    while len(pending) > _MAX_IN_FLIGHT:
        await pending.popleft()


async def _aiter(
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
) -> AsyncIterator[AudioFrame]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame


# -- paths → streams ---------------------------------------------------------------------


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


# -- raw PCM from a byte stream (stdin) ---------------------------------------------------


async def frames_from_reader(
    reader: BinaryIO,
    sr: int,
    *,
    stream_id: str,
    encoding: Encoding,
    channels: int = 1,
    chunk_ms: float = 100,
    start_us: int | None = None,
) -> AsyncIterator[AudioFrame]:
    """Frames of raw interleaved samples read from ``reader`` (already in ``encoding``).

    Reads happen in a worker thread, so a live source (``arecord | tympan produce -``)
    never blocks the producer's event loop. The chunk read before end-of-file carries
    ``eos``; a trailing partial sample is dropped with a warning.
    """
    loop = asyncio.get_running_loop()
    start = now_us() if start_us is None else start_us
    step = chunk_samples(sr, chunk_ms)
    block = Encoding(encoding).sample_width * channels
    step_bytes = step * block
    current = await loop.run_in_executor(None, reader.read, step_bytes)
    for seq in itertools.count():
        following = await loop.run_in_executor(None, reader.read, step_bytes) if current else b""
        last = not following
        usable = len(current) - len(current) % block
        if usable != len(current):
            log.warning(
                "stream %r: dropping %d trailing byte(s) that do not make a whole sample",
                stream_id,
                len(current) - usable,
            )
        yield AudioFrame(
            stream_id=stream_id,
            seq=seq,
            sample_rate=sr,
            encoding=Encoding(encoding),
            channels=channels,
            capture_us=start + (seq * step * 1_000_000) // sr,
            eos=last,
            payload=current[:usable],
        )
        if last:
            return
        current = following


# -- the whole `tympan produce` run --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    """Everything ``tympan produce`` was asked to do (built by ``stream/cli/produce.py``).

    ``paths`` are files and folders, or the single path ``"-"`` for raw samples on
    stdin, which are published unchanged in ``encoding``/``sr``/``channels``. For files,
    ``encoding`` and ``sr`` are the output: files are downmixed to mono, resampled to
    ``sr`` (soxr) when given, and transcoded.
    """

    paths: tuple[str, ...]
    client: KafkaClientConfig
    topic: str
    chunk_ms: float = 100
    realtime: bool = True
    encoding: Encoding = Encoding.PCM_S16LE
    sr: int | None = None
    channels: int = 1
    streams: int | None = None
    stream_id: str | None = None
    stream_id_prefix: str = ""
    progress: bool = True
    tuning: ProducerTuning = field(default_factory=ProducerTuning)

    @property
    def from_stdin(self) -> bool:
        return self.paths == ("-",)


@dataclass(frozen=True, slots=True)
class ProduceReport:
    """The outcome: what was sent and which inputs failed (each error names its path)."""

    stats: ProduceStats
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


async def produce(
    request: ProduceRequest,
    *,
    stdin: BinaryIO | None = None,
    on_error: Callable[[str], None] | None = None,
) -> ProduceReport:
    """Run a whole produce request: load, plan, interleave, send, report.

    Inputs that cannot be read are reported through ``on_error`` as they fail and
    listed in the report; the others are still published.

    Raises
    ------
    ConfigError
        Contradictory options (``--stream-id`` with several files, stdin without a rate).
    BrokerError
        The broker cannot be reached or refuses records.
    """
    if request.from_stdin:
        return await _produce_stdin(request, stdin)
    if "-" in request.paths:
        raise ConfigError("'-' (stdin) cannot be mixed with files")
    failures: list[str] = []

    def fail(message: str) -> None:
        failures.append(message)
        if on_error is not None:
            on_error(message)

    files, problems = expand_paths(request.paths)
    for problem in problems:
        fail(problem)
    sources, _ = load_sources(
        files,
        encoding=request.encoding,
        sr=request.sr,
        stream_id=request.stream_id,
        stream_id_prefix=request.stream_id_prefix,
        on_error=lambda exc: fail(str(exc)),
    )
    plans = plan_streams(sources, streams=request.streams, chunk_ms=request.chunk_ms)
    if not plans:
        return ProduceReport(ProduceStats(0, 0, 0, 0.0), tuple(failures) or ("nothing to send",))
    frames = plan_frames(plans, chunk_ms=request.chunk_ms, realtime=request.realtime)
    total = sum(p.n_frames(request.chunk_ms) for p in plans)
    stats = await _send_with_progress(request, frames, total)
    return ProduceReport(stats, tuple(failures))


async def _produce_stdin(request: ProduceRequest, stdin: BinaryIO | None) -> ProduceReport:
    if request.sr is None:
        raise ConfigError("raw samples on stdin need --rate (and --encoding, --channels)")
    if request.streams not in (None, 1):
        raise ConfigError("--streams cannot fan out stdin; write the samples to a file first")
    if stdin is None:
        raise ConfigError("no stdin to read raw samples from")
    frames = frames_from_reader(
        stdin,
        request.sr,
        stream_id=request.stream_id or (request.stream_id_prefix + "stdin"),
        encoding=request.encoding,
        channels=request.channels,
        chunk_ms=request.chunk_ms,
    )
    stats = await _send_with_progress(request, frames, None)
    return ProduceReport(stats, ())


async def _send_with_progress(
    request: ProduceRequest,
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame],
    total: int | None,
) -> ProduceStats:
    from tqdm import tqdm

    with tqdm(
        total=total,
        unit="frame",
        disable=None if request.progress else True,  # None: only on a terminal
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        return await produce_frames(
            request.client,
            request.topic,
            frames,
            realtime=request.realtime,
            tuning=request.tuning,
            on_frame=lambda _: bar.update(),
        )
