"""Control records: what the compacted control topic holds, and reading and writing it.

The compacted control topic (``stream.kafka.topics.Topics.control``) says which model each
role serves. Records (JSON, UTF-8; documented in ``docs/hot-reload.md``)::

    key   = "model/<role>"                      # role: a Role value, "scene" (labels) or "speaker"
    value = {"role": "scene", "name": "scene", "version": "4",
             "path": "scene/4",                 # inside the model repository, relative
             "sha256": "<sha256 of manifest.json>",
             "spec_hash": "<the model's FeatureSpec hash>",
             "published_at": "2026-11-25T16:00:00Z"}

Only the admin principal writes the control topic. Workers write what they did to
the compacted control-status topic (``stream.kafka.topics.Topics.control_status``)::

    key   = "status/<worker-id>/<role>"         # written by each worker after each attempt
    value = {"worker": ..., "app_id": ..., "role": ..., "state": "active" | "refused",
             "name": ..., "version": ..., "reason": "...", "at": "..."}

    key   = "last-good/<role>"                  # written by workers after a swap
    value = the announcement a worker last checked and served (same fields as model/<role>)

``sha256`` pins ``manifest.json``, which itself pins ``model.onnx`` and ``golden.npz``
by digest, so the bytes a worker loads are the bytes that were validated at publish
(:mod:`stream.control.gate`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from stream.control.json_records import JsonRecordError, decode_object
from stream.control.signing import SignatureError, Signer, Verifier
from stream.errors import ConfigError, ContractError
from stream.events import ModelRef
from stream.kafka.compacted import CompactedRecord, read_latest
from stream.kafka.config import KafkaClientConfig, send_acked
from stream.roles import Role
from stream.settings import ControlLimits

log = logging.getLogger(__name__)

MODEL_PREFIX = "model/"

STATUS_PREFIX = "status/"

LAST_GOOD_PREFIX = "last-good/"

DEFAULT_LIMITS = ControlLimits()

MAX_REASON_CHARS = 2000  # a status record stays far below the control record limit

_ANNOUNCEMENT_FIELDS = ("role", "name", "version", "path", "sha256", "spec_hash", "published_at")

ROLLBACK_FIELD = "rollback"  # optional, true: the publisher means to go back (signed)

OLDER_VERSION = "older_version"  # the reason a worker refuses a move back

_NUMERIC_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_key(role: str) -> bytes:
    """The control-topic key that announces ``role``'s active model."""
    return f"{MODEL_PREFIX}{Role.parse(role).value}".encode()


def last_good_key(role: str) -> bytes:
    """The control-topic key of the announcement a worker last checked and served."""
    return f"{LAST_GOOD_PREFIX}{Role.parse(role).value}".encode()


def status_key(worker: str, role: str) -> bytes:
    """The control-topic key of one worker's last reload outcome for ``role``."""
    return f"{STATUS_PREFIX}{worker}/{role}".encode()


def key_role(key: bytes | None, prefix: str) -> Role | None:
    """The role a ``<prefix><role>`` key names, if it names one."""
    text = (key or b"")[len(prefix) :].decode("utf-8", "replace")
    return next((role for role in Role if role.value == text), None)


@dataclass(frozen=True, slots=True)
class ModelAnnouncement:
    """``role`` is to be served by ``name``/``version`` found at ``path``."""

    role: Role
    name: str
    version: str
    path: str
    sha256: str
    spec_hash: str
    published_at: str
    rollback: bool = False

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)

    @property
    def key(self) -> bytes:
        return model_key(self.role)

    def to_json(self) -> bytes:
        """The record's value; ``rollback`` appears only when true, so an announcement
        that moves forward is the bytes earlier releases wrote and read."""
        fields = asdict(self)
        if not self.rollback:
            del fields[ROLLBACK_FIELD]
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_record(
        cls,
        key: bytes | None,
        value: bytes | None,
        *,
        where: str | None = None,
        limits: ControlLimits = DEFAULT_LIMITS,
        prefix: str = MODEL_PREFIX,
    ) -> ModelAnnouncement:
        """Decode a ``model/<role>`` (or ``last-good/<role>``) record, within ``limits``.

        ``prefix``: the record's key, when given, must be ``<prefix><role>`` for the
        role it holds (``model/`` or ``last-good/``). Errors name the record (``where``,
        else the key) and the bad field.

        Raises
        ------
        ConfigError
            Too large, nested too deep, not JSON, a missing or non-string field, a
            role that is none (:meth:`Role.parse`) or disagrees with the key. Never
            anything else, whatever ``value``.
        """
        where = where or f"control record {key!r}"
        if value is None:
            raise ConfigError(f"{where}: a tombstone announces no model")
        try:
            data = decode_object(
                value,
                what=where,
                max_bytes=limits.control_max_bytes,
                max_depth=limits.max_json_depth,
            )
        except JsonRecordError as exc:
            raise ConfigError(f"{exc.reason}: {exc}") from exc
        bad = [f for f in _ANNOUNCEMENT_FIELDS if not isinstance(data.get(f), str) or not data[f]]
        if bad:
            raise ConfigError(f"{where}: field(s) {', '.join(bad)} missing or not a string")
        rollback = data.get(ROLLBACK_FIELD, False)
        if not isinstance(rollback, bool):
            raise ConfigError(f"{where}: field {ROLLBACK_FIELD} must be true or false")
        if _instant(data["published_at"]) is None:
            raise ConfigError(
                f"{where}: published_at {data['published_at'][:40]!r} is not an ISO-8601 time"
            )
        try:
            role = Role.parse(data["role"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        fields = {f: data[f] for f in _ANNOUNCEMENT_FIELDS}
        announcement = cls(**fields | {"role": role, "rollback": rollback})
        if key is not None and key != f"{prefix}{role.value}".encode():
            raise ConfigError(f"{where}: role {role.value!r} does not match the key")
        return announcement


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What one worker did with one announcement: ``active`` or ``refused`` (why)."""

    worker: str
    app_id: str
    role: Role
    state: str
    name: str
    version: str
    reason: str
    at: str

    @property
    def key(self) -> bytes:
        return status_key(self.worker, self.role)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


# -- order ---------------------------------------------------------------------------------


def moves_back(new: ModelAnnouncement, floor: ModelAnnouncement | None) -> str | None:
    """Why serving ``new`` after ``floor`` would move its role back, or ``None``.

    Versions only move forward, so that whoever can write the control topic cannot
    bring back an older model, even one a trusted key signed long ago (a replay):

    * ``new`` must not have been published before ``floor`` (``published_at``);
    * and, unless ``new`` says ``rollback: true``, a model of the same name must not
      have a lower version (dot-separated numbers compared as numbers: ``10`` > ``9``;
      versions that are not numbers are ordered by ``published_at`` alone).

    A rollback is an announcement like any other, signed like any other (its
    ``rollback`` field is inside the signed value), and it must be newer than what it
    rolls back: so it cannot be replayed later to undo a newer release either.
    ``floor`` is the newest announcement a worker has accepted for the role (``None``:
    none yet).
    """
    if floor is None:
        return None
    before = _instant(new.published_at)
    floor_at = _instant(floor.published_at)
    if before is not None and floor_at is not None and before < floor_at:
        return (
            f"{OLDER_VERSION}: model {new.ref.tag} was published at {new.published_at}, "
            f"before {floor.ref.tag} ({floor.published_at}), which this worker has already "
            "seen: a replay of an older announcement? (publish again to go back: "
            "tympan models publish --rollback)"
        )
    if new.rollback or new.name != floor.name:
        return None
    ours, theirs = _version_key(new.version), _version_key(floor.version)
    if ours is not None and theirs is not None and ours < theirs:
        return (
            f"{OLDER_VERSION}: model {new.ref.tag} is older than {floor.ref.tag}, which this "
            "worker has already seen; versions only move forward unless the publisher "
            "signs a rollback (tympan models publish --rollback)"
        )
    return None


def _version_key(version: str) -> tuple[int, ...] | None:
    """``"2.10"`` -> ``(2, 10)``; ``None`` for a version that is not dotted numbers."""
    if _NUMERIC_VERSION.fullmatch(version) is None or len(version) > 100:
        return None
    return tuple(int(part) for part in version.split("."))


def _instant(text: str) -> datetime | None:
    """An ISO-8601 time (UTC when it names no zone), or ``None`` if it is none."""
    try:
        when = datetime.fromisoformat(text[:64])
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def describe_failure(exc: BaseException) -> str:
    """Why a model was refused, for logs and status records: a ``ContractError``'s
    sentence, else the exception's type and message (e.g. an onnxruntime failure)."""
    text = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_REASON_CHARS]


async def read_control(
    client: KafkaClientConfig, topic: str, *, timeout_s: float = 10.0
) -> dict[bytes, bytes | None]:
    """The latest value per key in the control topic (read to its end, no group).

    Raises
    ------
    BrokerError
        The broker or the topic cannot be reached in ``timeout_s``.
    """
    latest = await read_latest(client, topic, timeout_s=timeout_s)
    return {key: record.value for key, record in latest.items()}


Latest = Mapping[bytes, bytes | None] | Mapping[bytes, CompactedRecord]


def _value(key: bytes, item: bytes | CompactedRecord | None) -> tuple[bytes | None, str]:
    """A snapshot entry's value and how messages name it (offset when known)."""
    if isinstance(item, CompactedRecord):
        return item.value, item.where
    return item, f"control record {key!r}"


def announcements(
    latest: Latest,
    *,
    prefix: str = MODEL_PREFIX,
    limits: ControlLimits = DEFAULT_LIMITS,
    verifier: Verifier | None = None,
) -> dict[Role, ModelAnnouncement]:
    """The valid announcements under ``prefix`` (``model/`` or ``last-good/``) in a
    :func:`read_control` (or :func:`~stream.kafka.compacted.read_latest`) result; a bad
    record is logged and passed over.

    Cheap checks first: only keys ``<prefix><role>`` of a known role are read at all,
    and with trusted keys (``verifier``) a value is decoded only once its signature
    checks out, so records nobody trusted signed cost no parsing.
    """
    out: dict[Role, ModelAnnouncement] = {}
    for key, item in latest.items():
        value, where = _value(key, item)
        if value is None or not key.startswith(prefix.encode()):
            continue
        if key_role(key, prefix) is None:
            log.warning("%s: not a role's key under %r, passed over", where, prefix)
            continue
        if verifier is not None and not signed(latest, key, verifier):
            continue
        try:
            found = ModelAnnouncement.from_record(
                key, value, where=where, limits=limits, prefix=prefix
            )
        except ConfigError as exc:
            log.warning("%s", exc)
            continue
        out[found.role] = found
    return out


def signed(latest: Latest, key: bytes, verifier: Verifier) -> bool:
    """Whether the snapshot's record under ``key`` passes ``verifier`` (logged if not)."""
    if not verifier.enabled:
        return True
    item = latest.get(key)
    headers = item.headers if isinstance(item, CompactedRecord) else ()
    value = item.value if isinstance(item, CompactedRecord) else item
    try:
        verifier.check(key, value, headers)
    except SignatureError as exc:
        log.error("control record %r refused at start: %s: %s", key, exc.reason, exc)
        return False
    return True


def statuses(
    latest: Mapping[bytes, bytes | None], *, limits: ControlLimits = DEFAULT_LIMITS
) -> tuple[list[dict[str, Any]], int]:
    """The workers' ``status/...`` records that decode as JSON objects, and how many
    did not (``tympan models active`` shows both)."""
    good: list[dict[str, Any]] = []
    bad = 0
    for key, value in sorted(latest.items()):
        if not key.startswith(STATUS_PREFIX.encode()) or value is None:
            continue
        try:
            good.append(
                decode_object(
                    value,
                    what=f"control record {key!r}",
                    max_bytes=limits.control_max_bytes,
                    max_depth=limits.max_json_depth,
                )
            )
        except JsonRecordError as exc:
            log.warning("%s", exc)
            bad += 1
    return good, bad


async def publish_records(
    client: KafkaClientConfig,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    signer: Signer | None = None,
) -> None:
    """Send ``(key, value)`` records to the control topic and wait for the broker's acks;
    with a ``signer`` each carries its Ed25519 signature (``stream.control.signing``)."""
    await send_acked(
        client,
        topic,
        records,
        what="model announcements",
        headers=signer.headers if signer is not None else None,
    )
