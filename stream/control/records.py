"""Control records: what the compacted control topic holds, and reading and writing it.

The compacted control topic (``stream.kafka.topics.Topics.control``) says which model each
role serves. Records (JSON, UTF-8; documented in ``docs/hot-reload.md``)::

    key   = "model/<role>"                      # role: a Role value, "scene" (labels) or "speaker"
    value = {"role": "scene", "name": "scene", "version": "4",
             "path": "scene/4",                 # inside the model repository, relative
             "sha256": "<sha256 of manifest.json>",
             "spec_hash": "<the model's FeatureSpec hash>",
             "published_at": "2026-11-25T16:00:00Z"}

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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from stream.control.json_records import JsonRecordError, decode_object
from stream.control.signing import Signer
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

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)

    @property
    def key(self) -> bytes:
        return model_key(self.role)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

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
        try:
            role = Role.parse(data["role"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        announcement = cls(**{f: data[f] for f in _ANNOUNCEMENT_FIELDS} | {"role": role})
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
) -> dict[Role, ModelAnnouncement]:
    """The valid announcements under ``prefix`` (``model/`` or ``last-good/``) in a
    :func:`read_control` (or :func:`~stream.kafka.compacted.read_latest`) result; a bad
    record is logged and passed over."""
    out: dict[Role, ModelAnnouncement] = {}
    for key, item in latest.items():
        value, where = _value(key, item)
        if not key.startswith(prefix.encode()) or value is None:
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
