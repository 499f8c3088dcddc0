"""Hints for a user who would otherwise wait for nothing.

Producing to a prefix that no worker consumes succeeds, and ``tympan tail`` on it prints
an empty table: both are right, and both leave a new user waiting. These checks ask the
broker whether the workers' consumer group has members and, when it has none, say so
and how to start one.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.kafka.config import KafkaClientConfig
from stream.kafka.groups import group_members
from stream.kafka.topics import Topics
from stream.settings import WorkerSettings
from stream.settings.specs import spec_of

ENV_APP_ID = spec_of(WorkerSettings, "app_id").env


def worker_group(prefix: str, environ: Mapping[str, str]) -> str:
    """The consumer group a worker on ``prefix`` joins (``$TYMPAN_APP_ID``, else
    ``<prefix>-worker``), as :attr:`WorkerSettings.group_id` computes it."""
    return WorkerSettings(topic_prefix=prefix, app_id=environ.get(ENV_APP_ID) or None).group_id


async def no_worker_warning(
    client: KafkaClientConfig, prefix: str, environ: Mapping[str, str]
) -> str | None:
    """A warning when no worker consumes the audio topic of ``prefix``; else ``None``.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker.
    prefix : str
        The topic prefix the audio goes to.
    environ : Mapping[str, str]
        The environment (``TYMPAN_APP_ID`` names another group).

    Returns
    -------
    str or None
        The sentence to print; ``None`` when a worker is a member of the group, or
        when the broker would not say (no warning is better than a wrong one).
    """
    group = worker_group(prefix, environ)
    members = await group_members(client, group)
    if members != 0:
        return None
    audio = Topics().with_prefix(prefix).audio
    return (
        f"no worker is consuming {audio} now (its consumer group {group!r} has no "
        f"members): frames wait in the topic until one starts, e.g. "
        f"`tympan worker --topic-prefix {prefix}`"
    )
