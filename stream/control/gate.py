"""The model gate: whether a model directory may be served, for ``tympan models publish``
and for every worker alike.

:func:`validate_model` loads a model and checks it (checksums, FeatureSpec, labels,
warm-up on the serving batch shapes, golden parity); :func:`announce` turns an accepted
directory into its control record; :func:`prepare` is what a worker runs on an
announcement before the swap, :func:`load_at_start` what it serves when it starts. A
worker that starts while the latest announcement is bad serves ``last-good/<role>``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from stream.control.records import (
    DEFAULT_LIMITS,
    LAST_GOOD_PREFIX,
    MODEL_PREFIX,
    Latest,
    ModelAnnouncement,
    announcements,
    describe_failure,
    statuses,
    utc_now,
)
from stream.control.signing import Verifier
from stream.errors import ConfigError, ContractError, ModelError, ParityError
from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_TOLERANCE
from stream.inference.manifest import MANIFEST_FILE, Manifest, load_manifest, sha256_file
from stream.inference.repository import resolve_model_dir
from stream.inference.session import OnnxModel
from stream.roles import Role
from stream.settings import ControlLimits
from stream.types import DeviceChoice

log = logging.getLogger(__name__)

SPEAKER_SWAP_REFUSED = (
    "this worker does not swap its speaker model live: enrolled speakers are bound to the "
    "embedding model's version; re-enroll for the new version, then restart the workers "
    "with --speaker-model"
)


def validate_model(
    model_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """Load ``model_dir`` (manifest, checksums, FeatureSpec, I/O), warm it up on the
    serving batch shapes, and replay its golden windows.

    Raises
    ------
    ModelError, FeatureSpecError
        From :meth:`OnnxModel.load`.
    ParityError
        The golden replay differs by more than ``tolerance``: this runtime does not
        compute what the exporter recorded (or the golden file is not this model's).
    ModelError
        Also when a warm-up batch or the golden replay fails in onnxruntime (e.g. a
        graph that only runs at some batch sizes): ``tympan models publish`` and the
        workers check the same sizes, 1 and ``max_batch``.
    """
    model = OnnxModel.load(model_dir, device=device, expected_spec=expected_spec)
    sizes = sorted(set(batch_sizes))
    try:
        model.warmup(sizes)
        diff = model.parity_check()
    except ContractError:
        raise
    except Exception as exc:  # onnxruntime refusing a batch shape, say: the model's fault
        m = model.manifest
        raise ModelError(
            f"{model_dir}: model {m.name}/{m.version} fails on this runtime at batch sizes "
            f"{sizes} or on its golden windows: {type(exc).__name__}: {str(exc)[:500]}"
        ) from exc
    if not diff <= tolerance:
        m = model.manifest
        raise ParityError(
            f"{model_dir}: model {m.name}/{m.version} failed the parity gate: golden "
            f"outputs differ by {diff:.3g} > tolerance {tolerance:g}",
            max_abs_diff=diff,
            output="golden",
        )
    return model


def announce(
    model_dir: Path | str, *, role: str, repo: Path, rollback: bool = False
) -> ModelAnnouncement:
    """The announcement for a model directory (which :func:`validate_model` accepted).

    ``path`` is relative to ``repo``: workers resolve it inside their own model
    repository and refuse anything else (:func:`locate`). ``rollback``: the publisher
    means to go back to a lower version (:func:`~stream.control.records.moves_back`).

    Raises
    ------
    ModelError
        ``model_dir`` is not inside ``repo`` (copy it there first).
    ConfigError
        ``role`` names no :class:`Role`.
    """
    model_dir = Path(model_dir).resolve()
    root = Path(repo).resolve()
    if not model_dir.is_relative_to(root) or model_dir == root:
        raise ModelError(
            f"{model_dir} is not inside the model repository {root}: workers load only "
            "models from their repository; copy it to <repo>/<name>/<version> (or pass "
            "--model-repo)"
        )
    manifest = load_manifest(model_dir)
    path = model_dir.relative_to(root).as_posix()
    return ModelAnnouncement(
        role=Role.parse(role),
        name=manifest.name,
        version=manifest.version,
        path=path,
        sha256=sha256_file(model_dir / MANIFEST_FILE),
        spec_hash=manifest.spec_hash,
        published_at=utc_now(),
        rollback=rollback,
    )


def locate(announcement: ModelAnnouncement, repo: Path) -> Path:
    """The announced model directory, which must resolve inside ``repo``.

    A record is untrusted: an absolute path, a ``..`` component or a symlink that
    leads out of the repository would let whoever writes to the control topic make
    every worker load (and run) files from anywhere on its disk.

    Raises
    ------
    ModelError
        The path is absolute, climbs out with ``..``, or resolves outside ``repo``.
    """
    path = PurePosixPath(announcement.path)
    what = f"model {announcement.name}/{announcement.version}: path {announcement.path!r}"
    if path.is_absolute() or ".." in path.parts or "\\" in announcement.path:
        raise ModelError(
            f"{what} must be a relative path inside the model repository (no absolute "
            "path, no '..')"
        )
    root = Path(repo).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ModelError(
            f"{what} resolves to {target}, not inside the model repository {root} "
            "(a symlink out of it?)"
        )
    return target


def prepare(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    serving: OnnxModel,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """Everything a worker checks before it swaps ``announcement`` in for ``serving``.

    Blocking (file reads, session creation, warm-up): run it in an executor.

    Raises
    ------
    ContractError
        Naming why: manifest digest differs from the record, FeatureSpec differs from
        the running feature bank's, labels or task (single/multi-label) differ,
        checksum, or the parity gate.
    """
    model_dir = check_digest(announcement, repo)
    what = f"model {announcement.name}/{announcement.version} at {model_dir}"
    running = serving.spec
    if announcement.spec_hash != running.spec_hash:
        raise ModelError(
            f"{what}: FeatureSpec {announcement.spec_hash[:12]} differs from the running "
            f"feature bank's {running.spec_hash[:12]}; a worker cannot change its feature "
            "frontend live: restart the workers with this model"
        )
    model = validate_model(
        model_dir,
        expected_spec=running,
        device=device,
        batch_sizes=batch_sizes,
        tolerance=tolerance,
    )
    check_identity(announcement, model, what)
    check_live_swap(model.manifest, serving.manifest, what)
    return model


def check_live_swap(new: Manifest, serving: Manifest, what: str) -> None:
    """What a running worker requires of a model it swaps in for ``serving``: the same
    FeatureSpec, label set and task (thresholds may change). :func:`prepare` and
    ``tympan models publish`` both apply it, so publish refuses what workers would.

    Raises
    ------
    ModelError
        Naming the difference and the way out (restart the workers with the model).
    """
    if new.spec_hash != serving.spec_hash:
        raise ModelError(
            f"{what}: FeatureSpec {new.spec_hash[:12]} differs from the running "
            f"feature bank's {serving.spec_hash[:12]}; a worker cannot change its feature "
            "frontend live: restart the workers with this model"
        )
    if new.labels != serving.labels:
        raise ModelError(
            f"{what}: labels {list(new.labels)} differ from the serving model's "
            f"{list(serving.labels)}; a live swap keeps the label set: restart the workers"
        )
    if new.task != serving.task:  # open streams' verdicts cannot switch aggregation midway
        raise ModelError(
            f"{what}: a {new.task}-label model cannot replace the serving {serving.task}-label "
            "one; a live swap keeps the task (thresholds may change): restart the workers"
        )


def check_publishable(
    model: Manifest, latest: Mapping[bytes, bytes | None], *, role: Role, repo: Path
) -> None:
    """Refuse to announce for ``role`` what the workers of the prefix would refuse: a
    label model they cannot swap in live (:func:`check_live_swap`), a speaker model
    other than the one they run (they never swap it live). The model they serve is
    :func:`served_model`'s; when the topic and ``repo`` tell none, nothing is refused.

    Raises
    ------
    ModelError
        Naming the served model, where that was read, and the way out.
    """
    role = Role.parse(role)
    served = served_model(latest, role=role, repo=repo)
    if served is None:
        return
    serving, where = served
    what = f"model {model.name}/{model.version}"
    if role is Role.SPEAKER:
        if (model.name, model.version) != (serving.name, serving.version):
            raise ModelError(
                f"{what}: workers run speaker model {serving.name}@{serving.version} "
                f"({where}); {SPEAKER_SWAP_REFUSED}"
            )
        return
    served_as = f"workers serve {serving.name}@{serving.version}, {where}"
    check_live_swap(model, serving, f"{what} ({served_as})")


def served_model(
    latest: Mapping[bytes, bytes | None],
    *,
    role: Role,
    repo: Path,
    limits: ControlLimits = DEFAULT_LIMITS,
) -> tuple[Manifest, str] | None:
    """The manifest of the model the workers of a prefix serve for ``role``, as far as
    the control topic tells, and where that was read: the newest ``active`` worker
    status, else ``last-good/<role>``, else ``model/<role>``, else the role's default
    model in ``repo`` (what a worker started without ``--model`` serves). ``None``:
    none of these is in ``repo``."""
    role = Role.parse(role)
    candidates: list[tuple[str, str]] = []  # (model reference, where it was read)
    workers, _ = statuses(latest, limits=limits)
    active = [s for s in workers if s.get("state") == "active" and _same_role(s, role)]
    for status in sorted(active, key=lambda s: str(s.get("at")), reverse=True):
        ref = f"{status.get('name')}/{status.get('version')}"
        candidates.append((ref, f"worker {status.get('worker')}'s status"))
    for prefix in (LAST_GOOD_PREFIX, MODEL_PREFIX):
        announced = announcements(latest, prefix=prefix, limits=limits).get(role)
        if announced is not None:
            candidates.append((announced.path, f"{prefix}{role}"))
    for ref, where in candidates:
        try:
            return load_manifest(resolve_model_dir(ref, repo=repo, role=role)), where
        except (ContractError, OSError):
            continue
    try:
        return load_manifest(resolve_model_dir(None, repo=repo, role=role)), "the default model"
    except (ContractError, OSError):
        return None


def _same_role(status: dict[str, object], role: Role) -> bool:
    try:
        return Role.parse(str(status.get("role"))) is role
    except ConfigError:
        return False


def load_announced(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """The announced model for a worker that is starting: its feature bank is not
    built yet, so any FeatureSpec is fine; the digest and the parity gate still apply.

    Raises
    ------
    ContractError
        As :func:`prepare`, except for FeatureSpec and labels.
    """
    model_dir = check_digest(announcement, repo)
    model = validate_model(model_dir, device=device, batch_sizes=batch_sizes, tolerance=tolerance)
    check_identity(announcement, model, f"model at {model_dir}")
    return model


def check_digest(announcement: ModelAnnouncement, repo: Path) -> Path:
    """The announced directory, if its ``manifest.json`` is the one published."""
    model_dir = locate(announcement, repo)
    what = f"model {announcement.name}/{announcement.version} at {model_dir}"
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(f"{what}: {MANIFEST_FILE} is missing")
    digest = sha256_file(manifest_path)
    if digest != announcement.sha256:
        raise ModelError(
            f"{what}: {MANIFEST_FILE} sha256 {digest} != announced {announcement.sha256} "
            "(the directory changed after it was published)"
        )
    return model_dir


def check_identity(announcement: ModelAnnouncement, model: OnnxModel, what: str) -> None:
    m = model.manifest
    if (m.name, m.version) != (announcement.name, announcement.version):
        raise ModelError(
            f"{what}: manifest says {m.name}/{m.version}, not the announced "
            f"{announcement.name}/{announcement.version}"
        )


def load_at_start(
    latest: Latest,
    *,
    repo: Path,
    role: Role = Role.LABEL,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    limits: ControlLimits = DEFAULT_LIMITS,
    verifier: Verifier | None = None,
) -> OnnxModel | None:
    """The model a starting worker serves for ``role``, from a :func:`read_control` result.

    The announcement ``model/<role>`` if it passes its checks, else the last good
    one (``last-good/<role>``, written by workers after each successful swap), else
    ``None`` (the worker falls back to ``--model``). Never raises because of what the
    records hold: a start-up must survive any latest record. With trusted keys
    (``verifier``) the announcement must carry a good signature, and worker-written
    ``last-good`` records, which no publisher signed, are not used.
    """
    verifier = verifier or Verifier()
    prefixes = (MODEL_PREFIX,) if verifier.enabled else (MODEL_PREFIX, LAST_GOOD_PREFIX)
    for prefix in prefixes:
        found = announcements(latest, prefix=prefix, limits=limits, verifier=verifier)
        announcement = found.get(role)
        if announcement is None:
            continue
        try:
            model = load_announced(announcement, repo=repo, device=device, batch_sizes=batch_sizes)
        except Exception as exc:  # any record, any model: the worker still starts
            log.error(
                "%s%s model %s refused at start: %s",
                prefix,
                role,
                announcement.ref.tag,
                describe_failure(exc),
            )
            continue
        log.info("serving %s%s: model %s", prefix, role, announcement.ref.tag)
        return model
    return None
