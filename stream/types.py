"""Type aliases that several modules share, defined once so that one name means one type.

``Float32`` is the audio, feature and score array type throughout the runtime.

``Device`` and ``DeviceChoice`` are two honestly different things: a worker runs on a
device it names (``cpu`` or ``cuda``, :class:`~stream.settings.WorkerSettings`), while
a caller that loads a model may also leave the choice to onnxruntime (``auto``: CUDA
when the installed onnxruntime has it, else CPU; :meth:`~stream.inference.session.OnnxModel.load`).
Every ``Device`` is a ``DeviceChoice``.

``Infer`` is the model call the batch loop makes: a batch of feature windows in, the
label probabilities and the embeddings out.

``Send`` and ``AnySend`` are the two shapes of "write a record" the runtime deals with:
``Send`` is the producer's (``await send(...)`` queues the record and gives back its
delivery, awaited when the record must be on the broker: the batch loop keeps sending
while deliveries fly, and offsets are committed after theirs). ``AnySend`` is what the
control follower accepts for its few status records: a ``Send``, or a send that returns
once the record is delivered; whatever it returns is awaited if it can be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Float32 = npt.NDArray[np.float32]

Device = Literal["cpu", "cuda"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
# what a worker promises of its events (docs/delivery.md)
Guarantee = Literal["at-least-once", "exactly-once"]

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

Send = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]
AnySend = Callable[[str, bytes, bytes], Awaitable[Any]]
