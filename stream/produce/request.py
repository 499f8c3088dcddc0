"""The whole ``tympan produce`` run: a :class:`ProduceRequest` in, a :class:`ProduceReport` out."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from stream.errors import ConfigError
from stream.kafka.config import KafkaClientConfig
from stream.kafka.producer import ProducerTuning, ProduceStats, produce_frames
from stream.produce.frames import frames_from_reader
from stream.produce.sources import expand_paths, load_sources, plan_frames, plan_streams
from stream.wire.frame import AudioFrame, Encoding


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    """Everything ``tympan produce`` was asked to do (built by ``stream/cli/produce.py``).

    ``paths`` are files and folders, or the single path ``"-"`` for raw samples on
    stdin, which are published unchanged in ``encoding``/``sr``/``channels``. For files,
    ``encoding`` and ``sr`` are the output: files are downmixed to mono, resampled to
    ``sr`` (soxr) when given, and transcoded. ``instance``: the ``instance`` header
    every frame of the run carries (``tympan produce`` stamps a new one per run, so a
    file sent again is a new stream; ``None``: none, the stream id alone names it).
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
    instance: str | None = None

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

    if request.instance is not None:
        frames = _stamped(frames, request.instance)
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


def _stamped(
    frames: Iterable[AudioFrame] | AsyncIterable[AudioFrame], instance: str
) -> Iterator[AudioFrame] | AsyncIterator[AudioFrame]:
    """``frames``, each with the ``instance`` header of the run."""
    if isinstance(frames, AsyncIterable):

        async def stamped_async() -> AsyncIterator[AudioFrame]:
            async for frame in frames:
                yield replace(frame, instance=instance)

        return stamped_async()
    return (replace(frame, instance=instance) for frame in frames)
