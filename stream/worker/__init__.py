"""The worker's Kafka/Faust side: the Faust app without Faust's consumer
(:mod:`stream.worker.app`), the audio topic a fetched batch at a time
(:mod:`stream.kafka.consumer`), commits from the offset ledger
(:mod:`stream.worker.commits`) and a process per core (:mod:`stream.worker.supervisor`).
The domain core (``stream.pipeline`` and below) knows nothing of it."""
