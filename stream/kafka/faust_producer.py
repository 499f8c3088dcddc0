"""The worker's Faust producer, durable whatever Faust's processing guarantee.

Faust asks its aiokafka producer for ``acks=all`` and idempotence only inside
transactions (exactly-once). The worker writes its events outside them and acks an
audio offset only once the events it fed are delivered (``stream.worker.delivery``),
so its producer must not acknowledge what one broker's loss can take back, nor write
a record twice when it retries across a leader change: ``acks=all`` with
``min.insync.replicas=2`` (``stream.kafka.topics``), and idempotence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Producer

__all__ = ["DurableProducer"]


class DurableProducer(Producer):
    """Faust's aiokafka producer with ``acks=all`` and idempotence always on."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}
