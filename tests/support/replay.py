"""The pipeline run synchronously, inference inline: the worker's twin for tests.

The same domain code as the worker (``stream.pipeline.Pipeline``) without Kafka or
Faust, so a test can state "the worker on Kafka says what the pipeline says". It lives
under tests/ because nothing in the runtime uses it (``tympan classify`` and the
evaluation read files through ``stream.inference.clips``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stream.events import LabelEvent, RejectedRecord, SpeakerEvent, SummaryEvent
from stream.features.windows import stack_windows
from stream.pipeline import EmbedJobs, Pipeline, Record, Step, embed_speech


@dataclass(slots=True)
class SyncRun:
    """Everything :func:`replay` produced, in order."""

    labels: list[LabelEvent] = field(default_factory=list)
    speakers: list[SpeakerEvent] = field(default_factory=list)
    summaries: list[SummaryEvent] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)


def replay(
    pipeline: Pipeline,
    records: Iterable[Record],
    infer: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    *,
    embed: EmbedJobs | None = None,
    close_all: bool = True,
) -> SyncRun:
    """Run records through ``pipeline`` with inference inline, one window batch per record.

    Parameters
    ----------
    pipeline : Pipeline
        The domain pipeline, as the worker builds it.
    records : iterable of Record
        Kafka records in offset order.
    infer : callable
        Model input ``[n, n_features, frames, 1]`` to probabilities ``[n, n_labels]``.
    embed : callable, optional
        With a pipeline that tracks speakers: speech jobs to unit embeddings ``[n, d]``.
    close_all : bool, optional
        Close every stream still open at the end (as a worker's shutdown does).

    Returns
    -------
    SyncRun
        The events and dead letters, in the order the worker would send them.
    """
    run = SyncRun()

    def settle(step: Step) -> None:
        run.rejected.extend(step.rejected)
        if step.jobs:
            x = stack_windows([job.window for job in step.jobs], pipeline.spec)
            probabilities = infer(x)
            if embed is not None and pipeline.speakers is not None:
                speech = pipeline.speech_mask(probabilities, step.jobs)
                embeddings = embed_speech(step.jobs, speech, embed)
                run.speakers.extend(pipeline.complete_speakers(step.jobs, embeddings))
            run.labels.extend(pipeline.complete(step.jobs, probabilities))
        run.summaries.extend(summary for _, summary in pipeline.take_summaries())

    for record in records:
        settle(pipeline.accept(record))
    if close_all:
        settle(pipeline.close_all())
    return run


def run_sync(
    pipeline: Pipeline,
    records: Iterable[Record],
    infer: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    *,
    close_all: bool = True,
) -> tuple[list[LabelEvent], list[SummaryEvent], list[RejectedRecord]]:
    """:func:`replay` without speakers.

    Returns
    -------
    tuple
        ``(labels, summaries, rejected)``.
    """
    run = replay(pipeline, records, infer, close_all=close_all)
    return run.labels, run.summaries, run.rejected
