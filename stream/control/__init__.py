"""The control plane: signed, bounded records on compacted topics, and the model gate.

Used by the worker (follow, swap) and by the CLI (``tympan models``, ``keys``) alike:

* :mod:`~stream.control.json_records`: the one safe decoder for JSON records from
  topics (size, depth, then parse);
* :mod:`~stream.control.signing`: Ed25519 signatures on control and registry records;
* :mod:`~stream.control.records`: the control topic's records (``model/<role>``,
  ``status/<worker>/<role>``, ``last-good/<role>``), read and written;
* :mod:`~stream.control.gate`: whether a model may be served (checksums, FeatureSpec,
  warm-up, golden parity), for ``tympan models publish`` and for workers;
* :mod:`~stream.control.active`: the model a worker serves now (:class:`ActiveModel`);
* :mod:`~stream.control.follower`: a worker following the topic and hot-swapping
  (:class:`ControlFollower`).

The names below are imported on first use: the JSON guard is imported by the event
kinds (domain core), which must not pull in onnxruntime or asyncio with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.control.active import ActiveModel
    from stream.control.follower import ControlFollower, ReloadPolicy
    from stream.control.gate import announce, load_announced, load_at_start, prepare, validate_model
    from stream.control.json_records import JsonRecordError, decode_json, decode_object
    from stream.control.records import (
        ModelAnnouncement,
        ReloadStatus,
        announcements,
        last_good_key,
        model_key,
        moves_back,
        publish_records,
        read_control,
        status_key,
        statuses,
    )
    from stream.control.signing import (
        SignatureError,
        Signer,
        Verifier,
        generate,
        key_id,
        signer_from,
    )

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "ActiveModel": "active",
    "announce": "gate",
    "announcements": "records",
    "ControlFollower": "follower",
    "decode_json": "json_records",
    "decode_object": "json_records",
    "generate": "signing",
    "JsonRecordError": "json_records",
    "key_id": "signing",
    "last_good_key": "records",
    "load_announced": "gate",
    "load_at_start": "gate",
    "model_key": "records",
    "ModelAnnouncement": "records",
    "moves_back": "records",
    "prepare": "gate",
    "publish_records": "records",
    "read_control": "records",
    "ReloadPolicy": "follower",
    "ReloadStatus": "records",
    "SignatureError": "signing",
    "Signer": "signing",
    "signer_from": "signing",
    "status_key": "records",
    "statuses": "records",
    "validate_model": "gate",
    "Verifier": "signing",
}

__all__ = [
    "ActiveModel",
    "ControlFollower",
    "JsonRecordError",
    "ModelAnnouncement",
    "ReloadPolicy",
    "ReloadStatus",
    "SignatureError",
    "Signer",
    "Verifier",
    "announce",
    "announcements",
    "decode_json",
    "decode_object",
    "generate",
    "key_id",
    "last_good_key",
    "load_announced",
    "load_at_start",
    "model_key",
    "moves_back",
    "prepare",
    "publish_records",
    "read_control",
    "signer_from",
    "status_key",
    "statuses",
    "validate_model",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream.control' has no attribute {name!r}")
    return getattr(importlib.import_module(f"stream.control.{home}"), name)
