"""Every tympan writer asks for ``acks=all`` and idempotence (issue #26: a leader's
loss must not take back an acknowledged record, and a retry must not write twice)."""

from __future__ import annotations

from stream.produce import ProducerTuning
from stream.worker.app import WorkerApp


def test_frame_producers_wait_for_every_insync_replica_and_are_idempotent() -> None:
    kwargs = ProducerTuning().kwargs()

    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is True


def test_the_workers_faust_producer_is_durable_outside_transactions() -> None:
    app = WorkerApp("durable-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    producer = app._new_producer()

    settings = {**producer._settings_default(), **producer._settings_extra()}
    assert settings["acks"] == "all"
    assert settings["enable_idempotence"] is True
