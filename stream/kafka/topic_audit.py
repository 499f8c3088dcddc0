"""What tympan wants of a topic against what the broker says it is: pure comparisons
and the sentences a client prints, apart from the admin calls that fetch them
(:mod:`stream.kafka.admin`).

:func:`check_existing` refuses what cannot be fixed in place (partition count, cleanup
policy); :func:`advise` describes what works but differs (replicas, ``min.insync.replicas``,
timestamp type), each with the command that fixes it; :func:`missing_topics_message`
is a client's refusal when its topics do not exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stream.errors import BrokerError
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics, TopicSpec


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    under_replicated: int = 0
    """Partitions with fewer in-sync replicas than replicas right now."""


def create_command(client: KafkaClientConfig, topics: Topics) -> str:
    """The ``tympan topics create`` command line that creates ``topics`` on ``client``.

    Parameters
    ----------
    client : KafkaClientConfig
        Whose bootstrap servers the command names.
    topics : Topics
        Whose prefix the command names.

    Returns
    -------
    str
        E.g. ``tympan topics create --broker 127.0.0.1:9092 --topic-prefix tympan``.
    """
    return (
        f"tympan topics create --broker {client.bootstrap_servers} --topic-prefix {topics.prefix}"
    )


def missing_topics_message(
    client: KafkaClientConfig, topics: Topics, missing: Sequence[str]
) -> str:
    """Why a client refused to start: which topics are missing and how to create them.

    Parameters
    ----------
    client : KafkaClientConfig
        The broker asked.
    topics : Topics
        The client's topics (their prefix).
    missing : sequence of str
        The names that do not exist.

    Returns
    -------
    str
        A sentence naming the topics and the command that creates them, or, for a name
        outside ``topics``, why tympan does not create it.
    """
    listed = ", ".join(map(repr, missing))
    foreign = [name for name in missing if name not in topics.names()]
    if foreign:
        return (
            f"topic(s) {listed} do not exist on {client.bootstrap_servers}, and "
            f"{', '.join(map(repr, foreign))} is not one of tympan's topics under prefix "
            f"{topics.prefix!r}, so tympan does not create it: create it with the "
            f"partitions its consumers expect, or leave out --topic and use --topic-prefix"
        )
    return (
        f"topic(s) {listed} do not exist on {client.bootstrap_servers}: start a worker "
        f"(it creates them) or run: {create_command(client, topics)}"
    )


# Configs whose absence on an existing topic is worth a warning, not a refusal: the
# topic works, but differently from one tympan creates (why, for each).
ADVISED = {
    "message.timestamp.type": (
        "idle streams are closed by the records' Kafka timestamps, and with CreateTime a "
        "producer's clock decides them (docs/delivery.md)"
    ),
    "min.insync.replicas": (
        "tympan's writers send with acks=all, which waits only for the in-sync replicas: "
        "with 1 of them, a leader that fails right after acknowledging loses the record "
        "(docs/kafka.md, 'Durability')"
    ),
}


def advise(specs: list[TopicSpec], infos: list[TopicInfo]) -> tuple[str, ...]:
    """One sentence per advised config an existing topic lacks, with the command that sets it.

    Only configs set on the topic itself are described (the admin calls ask the
    broker for those alone), so an unset one is the broker's default, ``CreateTime``
    for the timestamp type unless the broker's ``log.message.timestamp.type`` says
    otherwise.
    """
    by_name = {info.name: info for info in infos}
    out = []
    for spec in specs:
        info = by_name[spec.name]
        if 0 < info.replication_factor < spec.replication_factor:
            out.append(
                f"topic {spec.name!r} has {info.replication_factor} replica(s) per partition, "
                f"tympan creates it with {spec.replication_factor} on this cluster: the loss of "
                "one broker loses its partitions. Add replicas with `kafka-reassign-partitions.sh "
                "--bootstrap-server <broker> --reassignment-json-file <plan> --execute` "
                "(docs/kafka.md, 'Durability')"
            )
        if info.under_replicated:
            out.append(
                f"topic {spec.name!r} has {info.under_replicated} under-replicated "
                "partition(s) now (fewer in-sync replicas than replicas: a broker is down or "
                "behind); see which with `kafka-topics.sh --bootstrap-server <broker> "
                "--describe --under-replicated-partitions`"
            )
        for key, why in ADVISED.items():
            wanted = spec.configs.get(key)
            actual = info.configs.get(key)
            if wanted is None or actual == wanted:
                continue
            out.append(
                f"topic {spec.name!r} has {key}={actual or '(broker default)'}, tympan creates "
                f"it with {wanted}: {why}. Set it with `kafka-configs.sh --bootstrap-server "
                f"<broker> --alter --entity-type topics --entity-name {spec.name} "
                f"--add-config {key}={wanted}`"
            )
    return tuple(out)


def check_existing(specs: list[TopicSpec], infos: list[TopicInfo], prefix: str) -> None:
    by_name = {info.name: info for info in infos}
    problems = []
    for spec in specs:
        info = by_name[spec.name]
        if info.partitions != spec.partitions:
            problems.append(
                f"topic {spec.name!r} has {info.partitions} partitions, expected {spec.partitions}"
            )
        wanted_policy = spec.configs.get("cleanup.policy", "delete")
        actual_policy = info.configs.get("cleanup.policy", "delete")
        if set(wanted_policy.split(",")) != set(actual_policy.split(",")):
            problems.append(
                f"topic {spec.name!r} has cleanup.policy={actual_policy}, expected {wanted_policy}"
            )
    if problems:
        raise BrokerError(
            "existing topics differ from what tympan creates: "
            + "; ".join(problems)
            + " (a topic's partitions cannot shrink and changing them moves keys between "
            "partitions: delete and recreate the topics with `tympan topics delete "
            f"--topic-prefix {prefix}` then `tympan topics create --topic-prefix {prefix}`, or "
            "use another prefix)"
        )
