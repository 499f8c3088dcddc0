"""Everything that talks to Kafka, and the only package that imports aiokafka.

* :mod:`~stream.kafka.config`: one frozen :class:`KafkaClientConfig` (bootstrap, TLS,
  SASL) rendered for aiokafka and for Faust; acknowledged publishing of a few records;
* :mod:`~stream.kafka.topics`: versioned topic names, partition counts and configs, and
  the admin calls that create and check them;
* :mod:`~stream.kafka.compacted`: the one reader of compacted topics (replay to the end,
  then follow), used by every follower (control, speaker registry);
* :mod:`~stream.kafka.consumer`: the worker's audio topic, a fetched batch at a time;
* :mod:`~stream.kafka.producer`: frames → one batching aiokafka producer;
* :mod:`~stream.kafka.readers`: group-less readers of event topics (``tympan tail``,
  the dashboard).

Importing this package (or :mod:`~stream.kafka.config`) does not load aiokafka, so the
domain core may hold a :class:`KafkaClientConfig` without pulling in the client.
"""

from __future__ import annotations

from stream.kafka.config import DEFAULT_BOOTSTRAP, KafkaClientConfig

__all__ = ["DEFAULT_BOOTSTRAP", "KafkaClientConfig"]
