"""The admin calls on tympan's topics (:mod:`stream.kafka.topics`): create, check, list,
describe, delete.

:func:`ensure_topics` creates what is missing and refuses (``BrokerError``) to run
against topics whose partition count or cleanup policy differs from
:mod:`stream.kafka.topics`. :func:`require_topics` is what every client (``tympan
produce``, ``tail``, ``speakers enroll --publish``, ``models publish``) calls before it
touches a topic: writers create the missing topics with these specs, readers refuse
with the command that creates them. The dev broker does not auto-create topics
(``auto.create.topics.enable=false``): a topic created on first use gets the broker's
default of one partition, which the worker then refuses.

``python -m stream.cli.topics wait|create`` is the command scripts/kafka.sh uses to wait
for the broker; it is the same code as ``tympan topics`` (``stream/cli/topics.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from stream.errors import BrokerError
from stream.kafka.config import KafkaClientConfig, broker_failure
from stream.kafka.topic_audit import (
    TopicInfo,
    advise,
    check_existing,
    create_command,
    missing_topics_message,
)
from stream.kafka.topics import Topics, TopicSpec

__all__ = [
    "CheckReport",
    "EnsureReport",
    "TopicInfo",
    "admin_client",
    "check_topics",
    "create_command",
    "delete_topics",
    "describe_topics",
    "ensure_topics",
    "list_topics",
    "missing_topics_message",
    "require_topics",
    "wait_for_broker",
]

# Broker error codes ensure_topics() tolerates.
_TOPIC_ALREADY_EXISTS = 36

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsureReport:
    """What :func:`ensure_topics` did: topics it created and topics that already existed.

    ``advice``: sentences about existing topics that work but miss a config tympan
    would have set (logged as warnings; the topics are left as they are).
    """

    created: tuple[str, ...]
    existing: tuple[str, ...]
    advice: tuple[str, ...] = ()


def admin_client(client: KafkaClientConfig, *, request_timeout_ms: int = 30_000) -> Any:
    """An (unstarted) aiokafka admin client for ``client``.

    Parameters
    ----------
    client : KafkaClientConfig
        Bootstrap servers, TLS and SASL.
    request_timeout_ms : int, optional
        Bound on each admin request.

    Returns
    -------
    aiokafka.admin.AIOKafkaAdminClient
        Not started: the caller starts and closes it.
    """
    return AIOKafkaAdminClient(**client.aiokafka_kwargs(), request_timeout_ms=request_timeout_ms)


async def wait_for_broker(client: KafkaClientConfig, *, timeout_s: float = 60.0) -> int:
    """Wait until a broker answers a metadata request; return how many brokers it lists.

    Parameters
    ----------
    client : KafkaClientConfig
        The brokers to ask.
    timeout_s : float, optional
        How long to keep asking (every 0.5 s).

    Returns
    -------
    int
        The number of brokers in the cluster's metadata.

    Raises
    ------
    BrokerError
        When no broker in ``client.bootstrap_servers`` answered within ``timeout_s``;
        the message names the servers and the last error.
    """
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        remaining_s = deadline - time.monotonic()
        request_timeout_ms = int(max(1.0, min(10.0, remaining_s)) * 1000)
        admin = admin_client(client, request_timeout_ms=request_timeout_ms)
        try:
            await asyncio.wait_for(admin.start(), timeout=max(1.0, remaining_s))
            cluster = await asyncio.wait_for(
                admin.describe_cluster(), timeout=max(1.0, remaining_s)
            )
            return len(cluster.get("brokers", []))
        except (KafkaError, OSError, TimeoutError) as exc:
            last = exc
        finally:
            await admin.close()
        if time.monotonic() + 0.5 >= deadline:
            break
        await asyncio.sleep(0.5)
    raise BrokerError(
        f"no Kafka broker answered at {client.bootstrap_servers} within {timeout_s:g} s "
        f"(last error: {last!r}); start one with scripts/kafka.sh up"
    ) from last


async def ensure_topics(
    client: KafkaClientConfig,
    topics: Topics,
    *,
    only: Collection[str] | None = None,
    timeout_s: float = 30.0,
) -> EnsureReport:
    """Create the missing topics of ``topics``; check the partitions of existing ones.

    Idempotent and safe to run from several workers at once (a topic created by
    another worker in between counts as existing). When it returns, every partition of
    a created topic has a leader, so the first produce does not bounce off
    ``NotLeaderForPartition``.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker.
    topics : Topics
        The topics and their specs.
    only : collection of str, optional
        Full names of the topics to ensure (default: all of ``topics``); a worker
        ensures :meth:`Topics.for_worker`, leaving alone what it does not use.
    timeout_s : float, optional
        Bound on each request and on the wait for leaders.

    Returns
    -------
    EnsureReport
        The topics created and those that already existed.

    Raises
    ------
    BrokerError
        When the broker cannot be reached, refuses to create a topic, or an existing
        topic has another partition count or cleanup policy than ``topics`` says;
        the message lists every mismatching topic with both values.
    """
    names = set(topics.names() if only is None else only)
    admin = admin_client(client, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        if topics.replication_factor is None:
            cluster = await admin.describe_cluster()
            topics = topics.for_cluster(len(cluster.get("brokers", [])))
        present = set(await admin.list_topics())
        wanted = [spec for spec in topics.specs() if spec.name in names]
        missing = [spec for spec in wanted if spec.name not in present]
        created = await _create(admin, missing, timeout_s) if missing else ()
        if created:
            await _wait_for_leaders(admin, list(created), timeout_s)
        existing = [spec for spec in wanted if spec.name not in created]
        advice: tuple[str, ...] = ()
        if existing:
            infos = await _describe(admin, [spec.name for spec in existing])
            check_existing(existing, infos, topics.prefix)
            advice = advise(existing, infos)
            for line in advice:
                log.warning("%s", line)
        return EnsureReport(
            created=created, existing=tuple(spec.name for spec in existing), advice=advice
        )
    except KafkaError as exc:
        raise BrokerError(
            f"cannot ensure topics {', '.join(n for n in topics.names() if n in names)}: "
            f"{broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await admin.close()


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_topics` found: missing topics and advice on existing ones."""

    missing: tuple[str, ...]
    advice: tuple[str, ...]
    brokers: int

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing to advise."""
        return not self.missing and not self.advice


async def check_topics(
    client: KafkaClientConfig, topics: Topics, *, timeout_s: float = 30.0
) -> CheckReport:
    """Compare the topics on the cluster with what tympan would create; change nothing.

    Reports missing topics, and for existing ones what :func:`ensure_topics` would warn
    about: fewer replicas than ``min(3, brokers)``, partitions under-replicated right
    now, a missing ``min.insync.replicas`` or timestamp type, each with the command
    that fixes it. Partition counts and cleanup policies that differ are refused as
    :func:`ensure_topics` refuses them.

    Parameters
    ----------
    client : KafkaClientConfig
        The cluster.
    topics : Topics
        The topics as tympan wants them (replication factor ``None``: decided for this
        cluster).
    timeout_s : float, optional
        Bound on each request.

    Returns
    -------
    CheckReport

    Raises
    ------
    BrokerError
        When the cluster cannot be reached, or an existing topic has another partition
        count or cleanup policy.
    """
    admin = admin_client(client, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster()).get("brokers", []))
        topics = topics.for_cluster(brokers)
        present = set(await admin.list_topics())
        wanted = topics.specs()
        existing = [spec for spec in wanted if spec.name in present]
        infos = await _describe(admin, [spec.name for spec in existing]) if existing else []
        check_existing(existing, infos, topics.prefix)
        return CheckReport(
            missing=tuple(spec.name for spec in wanted if spec.name not in present),
            advice=advise(existing, infos),
            brokers=brokers,
        )
    except KafkaError as exc:
        raise BrokerError(
            f"cannot check topics {', '.join(topics.names())}: "
            f"{broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await admin.close()


async def require_topics(
    client: KafkaClientConfig,
    topics: Topics,
    names: Sequence[str] = (),
    *,
    create: bool,
    timeout_s: float = 30.0,
) -> EnsureReport:
    """Make sure the topics a client is about to use exist, before it uses them.

    The one check every tympan client runs first, so that no client ever makes a topic
    appear with the broker's defaults (one partition, no compaction), which the worker
    would then refuse to run against.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker to ask.
    topics : Topics
        The project's topics under the client's prefix: their specs are what ``create``
        creates, and their prefix is what the refusal's command names.
    names : sequence of str, optional
        The topics the client reads or writes (default: all of ``topics``). A name that is
        not one of ``topics`` (a custom ``--topic``) is never created: it must exist.
    create : bool
        True for writers: when one of ``names`` is a missing topic of ``topics``, create
        every missing topic of ``topics`` with its spec and check the existing ones
        (:func:`ensure_topics`), so the worker started next finds them as it wants them;
        when they all exist, nothing else is asked of the broker.
        False for readers: refuse when one of ``names`` is missing, since a reader pointed
        at a wrong broker or prefix would otherwise wait for events that never come.
    timeout_s : float, optional
        Bound on each broker request.

    Returns
    -------
    EnsureReport
        The topics created (only when ``create``) and those that already existed.

    Raises
    ------
    BrokerError
        When one of ``names`` is missing (and cannot be created): the message names the
        topics and the command that creates them; when an existing topic of ``topics``
        has another partition count or cleanup policy (``create`` only); when the broker
        cannot be reached.
    """
    wanted = list(names) or list(topics.names())
    present = set(await list_topics(client))
    missing = [name for name in wanted if name not in present]
    # Only when one of its own topics is missing does a writer create the project's
    # topics: a client whose topics exist needs no rights on the others (a producer
    # principal on a broker with ACLs sees the audio topic alone).
    ours = create and any(name in topics.names() for name in missing)
    report = await ensure_topics(client, topics, timeout_s=timeout_s) if ours else None
    if report is not None:
        present = set(await list_topics(client))
        missing = [name for name in wanted if name not in present]
    if missing:
        raise BrokerError(missing_topics_message(client, topics, missing))
    if report is not None:
        return report
    return EnsureReport(created=(), existing=tuple(wanted))


async def describe_topics(client: KafkaClientConfig, names: list[str]) -> list[TopicInfo]:
    """Partitions, replication factor and non-default configs of ``names``.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker.
    names : list of str
        Full topic names.

    Returns
    -------
    list of TopicInfo
        In the order of ``names``.

    Raises
    ------
    BrokerError
        When one of ``names`` does not exist or the broker cannot be reached.
    """
    admin = admin_client(client)
    try:
        await admin.start()
        return await _describe(admin, names)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot describe topics: {broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await admin.close()


async def list_topics(client: KafkaClientConfig) -> list[str]:
    """Every topic name on the cluster, sorted (internal ``__*`` topics included).

    Parameters
    ----------
    client : KafkaClientConfig
        The broker.

    Returns
    -------
    list of str

    Raises
    ------
    BrokerError
        When the broker cannot be reached.
    """
    admin = admin_client(client)
    try:
        await admin.start()
        return sorted(await admin.list_topics())
    except KafkaError as exc:
        raise BrokerError(
            f"cannot list topics: {broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await admin.close()


async def delete_topics(
    client: KafkaClientConfig, names: list[str], *, wait_s: float = 0.0
) -> list[str]:
    """Delete ``names``; topics that do not exist are ignored (used by test clean-up).

    Parameters
    ----------
    client : KafkaClientConfig
        The broker.
    names : list of str
        Topics to delete.
    wait_s : float, optional
        When positive, wait up to this long until the broker no longer lists them, so
        that the same names can be created again at once (deletion is asynchronous).

    Returns
    -------
    list of str
        The topics that existed and were deleted.

    Raises
    ------
    BrokerError
        When the broker cannot be reached or refuses, or the topics are still listed
        after ``wait_s``.
    """
    admin = admin_client(client)
    try:
        await admin.start()
        present = set(await admin.list_topics())
        doomed = [name for name in names if name in present]
        if doomed:
            await admin.delete_topics(doomed)

        async def still_listed() -> list[str]:
            return sorted(set(doomed) & set(await admin.list_topics()))

        if wait_s > 0 and doomed:
            await _until_none(
                still_listed,
                timeout_s=wait_s,
                interval_s=0.2,
                problem=f"are still listed on {client.bootstrap_servers} {wait_s:g} s after "
                "their deletion",
            )
        return doomed
    except KafkaError as exc:
        raise BrokerError(
            f"cannot delete topics: {broker_failure(exc, client.bootstrap_servers)}"
        ) from exc
    finally:
        await admin.close()


async def _create(admin: Any, specs: list[TopicSpec], timeout_s: float) -> tuple[str, ...]:
    response = await admin.create_topics(
        [spec.new_topic() for spec in specs], timeout_ms=int(timeout_s * 1000)
    )
    created: list[str] = []
    failures: list[str] = []
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        message = topic_error[2] if len(topic_error) > 2 else None
        if code == 0:
            created.append(name)
        elif code != _TOPIC_ALREADY_EXISTS:
            failures.append(f"{name!r}: error code {code} ({message})")
    if failures:
        raise BrokerError(f"the broker refused to create topics: {'; '.join(failures)}")
    return tuple(created)


async def _metadata(admin: Any, names: list[str]) -> list[dict[str, Any]]:
    """Metadata of those of ``names`` that exist.

    Asks for *all* topics and filters: a metadata request that names a missing topic
    makes a broker with ``auto.create.topics.enable=true`` (Kafka's default, though not
    the dev broker's) create it with default settings, which would defeat both the
    existence check and :func:`ensure_topics`.
    """
    wanted = set(names)
    return [topic for topic in await admin.describe_topics() if topic["topic"] in wanted]


async def _wait_for_leaders(admin: Any, names: list[str], timeout_s: float) -> None:
    async def leaderless() -> list[str]:
        metadata = await _metadata(admin, names)
        out = [
            topic["topic"]
            for topic in metadata
            if not topic["partitions"]
            or any(partition["leader"] < 0 for partition in topic["partitions"])
        ]
        return out + sorted(set(names) - {topic["topic"] for topic in metadata})

    await _until_none(
        leaderless,
        timeout_s=timeout_s,
        interval_s=0.1,
        problem=f"have partitions without a leader {timeout_s:g} s after they were created",
    )


async def _until_none(
    pending: Callable[[], Awaitable[list[str]]],
    *,
    timeout_s: float,
    interval_s: float,
    problem: str,
) -> None:
    """Poll ``pending`` until it names no topic; past ``timeout_s`` raise ``BrokerError``."""
    deadline = time.monotonic() + timeout_s
    while names := await pending():
        if time.monotonic() >= deadline:
            raise BrokerError(f"topics {', '.join(map(repr, names))} {problem}")
        await asyncio.sleep(interval_s)


async def _describe(admin: Any, names: list[str]) -> list[TopicInfo]:
    by_name = {topic["topic"]: topic for topic in await _metadata(admin, names)}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise BrokerError(f"topics {', '.join(map(repr, unknown))} do not exist on the broker")
    configs = await _topic_configs(admin, names)
    infos = []
    for name in names:
        partitions = by_name[name]["partitions"]
        replicas = len(partitions[0]["replicas"]) if partitions else 0
        behind = sum(len(part["isr"]) < len(part["replicas"]) for part in partitions)
        infos.append(TopicInfo(name, len(partitions), replicas, configs.get(name, {}), behind))
    return infos


async def _topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic-level configs that are set on the topic itself (not broker defaults)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    responses = await admin.describe_configs(resources)
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            entries = resource["config_entries"]
            out[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in entries
                if not entry.get("is_default", False) and entry.get("config_source", 1) == 1
            }
    return out
