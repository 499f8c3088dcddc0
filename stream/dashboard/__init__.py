"""``tympan dashboard``: a live page over the worker's result topics.

:mod:`stream.dashboard.state` folds events into a bounded picture (pure, tested
without Kafka); :mod:`stream.dashboard.server` reads Kafka and pushes that picture
to the page in ``static/`` over Server-Sent Events.
"""
