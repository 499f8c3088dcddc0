"""The worker's Faust app: Faust without its own consumer.

The worker stays a Faust app for what Faust does well here: the CLI worker and its
signal handling, the service lifecycle, the web server (``/metrics``), the producer,
and the background tasks (control and registry followers). Its boot strategy leaves
out Faust's consumer, conductor, agents and tables; the audio topic is consumed by
:class:`~stream.kafka.consumer.BatchConsumer`, an app service, a fetched batch at a
time (``docs/architecture.md`` has the trade-off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import ServiceT

from stream.kafka.commits import CommitLog
from stream.kafka.consumer import BatchConsumer, ConsumerPlan
from stream.kafka.faust_producer import DurableProducer
from stream.kafka.transactions import PartitionTransactions
from stream.worker.metrics import WorkerMetrics
from stream.worker.runtime import WorkerRuntime


class BatchBoot(BootStrategy):
    """Faust's services minus its consumer side (consumer, conductor, tables) and
    agents: the producer, web server, sensors and app tasks remain."""

    enable_kafka_consumer = False

    def agents(self) -> Iterable[ServiceT]:
        return []


class WorkerApp(faust.App):
    """A Faust app that boots with :class:`BatchBoot` and sends with a durable producer."""

    BootStrategy = BatchBoot

    def _new_producer(self) -> Any:
        return DurableProducer(self.transport, loop=self.loop, beacon=self.beacon)


def serve_audio(
    app: faust.App,
    plan: ConsumerPlan,
    runtime: WorkerRuntime,
    commits: CommitLog,
    *,
    metrics: WorkerMetrics,
    on_fatal: Callable[[BaseException], None],
    transactions: PartitionTransactions | None = None,
) -> None:
    """Register the audio consumer as an app service, and the ``/metrics`` page
    (``transactions``: exactly-once, ``stream.kafka.transactions``)."""

    class AudioConsumer(BatchConsumer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(
                plan,
                runtime,
                commits,
                on_lag=lambda partition, behind: metrics.lag.labels(str(partition)).set(behind),
                on_fatal=on_fatal,
                transactions=transactions,
                **kwargs,
            )

    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    faust_app: Any = app  # Faust's decorators are untyped
    faust_app.service(AudioConsumer)
    faust_app.page("/metrics")(metrics_page)
