"""Consumer groups: who, if anyone, is reading a topic now.

``tympan produce`` writes to the audio topic whether or not a worker reads it; the
frames then wait in the topic and nothing says why no event comes. Asking the group
coordinator how many members the workers' group has lets the command warn at once.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from stream.kafka.admin import admin_client
from stream.kafka.config import KafkaClientConfig

log = logging.getLogger(__name__)


async def group_members(
    client: KafkaClientConfig, group_id: str, *, timeout_s: float = 5.0
) -> int | None:
    """How many consumers are members of ``group_id`` now.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker to ask.
    group_id : str
        The consumer group (the worker's is ``WorkerSettings.group_id``).
    timeout_s : float, optional
        Bound on the whole question; this is advice, never worth a long wait.

    Returns
    -------
    int or None
        0 for a group that has no members (or never existed); ``None`` when the broker
        would not say (unreachable, no permission to describe the group, a timeout).
    """
    admin = admin_client(client, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        responses = await asyncio.wait_for(admin.describe_consumer_groups([group_id]), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.debug("cannot describe consumer group %r: %r", group_id, exc)
        return None
    finally:
        await admin.close()
    for response in responses:
        for group in response.to_object().get("groups", []):
            if group.get("group") == group_id and group.get("error_code") == 0:
                return len(group.get("members") or [])
    return None
