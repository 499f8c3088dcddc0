"""Group-less readers of event topics: what ``tympan tail`` and the dashboard read with.

A reader joins no consumer group and commits nothing: it starts at the end of each
topic (or at the beginning when asked) and only looks. The aiokafka consumer is built
here so that the command and the dashboard never import the client library;
:data:`BROKER_ERRORS` is what a failed start or fetch raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream.kafka.config import KafkaClientConfig
from stream.kafka.fetch import FetchGuard

#: What a reader's ``start`` or ``getmany`` raises when the broker is gone or refuses.
BROKER_ERRORS: tuple[type[Exception], ...] = (KafkaError, OSError)

#: The consumer a reader is; its ``getmany`` returns ``{TopicPartition: [record, ...]}``.
EventReader: TypeAlias = AIOKafkaConsumer


def event_reader(
    client: KafkaClientConfig,
    topics: Sequence[str],
    *,
    from_beginning: bool,
    guard: FetchGuard | None = None,
) -> EventReader:
    """A consumer of ``topics`` outside any group, not yet started, reading
    ``read_committed``, its fetches screened by ``guard``.

    ``from_beginning``: start at each partition's first record rather than its end.
    ``guard``: ask it (:meth:`FetchGuard.take`) after each ``getmany`` for the offsets it
    skipped (``None``: a guard with the default limits is installed, and what it skips
    is not reported).
    """
    consumer = AIOKafkaConsumer(
        *topics,
        **client.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed",
    )
    (guard or FetchGuard()).install(consumer)  # before start: every fetch is screened
    return consumer
