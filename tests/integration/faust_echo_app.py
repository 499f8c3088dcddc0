"""A one-agent Faust app that proves faust-streaming works against the test broker.

It reads raw records from ``ECHO_IN``, writes each value upper-cased to ``ECHO_OUT``
under the same key, and commits its offsets (consumer group = ``ECHO_APP_ID``).
``tests/integration/test_broker.py`` runs it as ``python faust_echo_app.py worker``
in a subprocess, so Faust's signal handlers and logging stay out of pytest.

Test support only: configuration comes from the environment the test sets.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

from stream.kafka.config import KafkaClientConfig

client = KafkaClientConfig.from_environ(os.environ, default_client_id="tympan-echo-test")
app = faust.App(
    os.environ["ECHO_APP_ID"],
    **client.faust_settings(),
    datadir=os.environ["ECHO_DATADIR"],
    store="memory://",
    web_enabled=False,
    topic_replication_factor=1,
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
    broker_commit_every=1,
    broker_commit_interval=0.2,
)
source = app.topic(os.environ["ECHO_IN"], key_type=bytes, value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ["ECHO_OUT"], key_type=bytes, value_type=bytes, value_serializer="raw")


@app.agent(source)
async def echo(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
    async for key, value in stream.items():
        await sink.send(key=key, value=value.upper())
        yield None


if __name__ == "__main__":
    app.main()
