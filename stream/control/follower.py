"""Model hot reload: a worker follows the control topic and swaps its model.

A worker's :class:`ControlFollower` reads the topic from the beginning without a
consumer group (every worker must see every record), and for each new announcement
of its role: loads the model beside the running one, checks it
(:func:`~stream.control.gate.prepare`: checksums, FeatureSpec, labels, warm-up on the
serving batch shapes, golden parity) in a thread, then swaps
:class:`~stream.control.active.ActiveModel`'s reference on the event loop.
A model that fails any check is refused: logged, reported under its status key,
and the old model keeps serving. So is any record of the followed keys that cannot
be decoded (too large, nested too deep, not JSON, a path outside the repository):
whatever a record holds, the follower reports it and goes on with the next one. A
worker that starts while the latest announcement is bad serves ``last-good/<role>``
(:func:`~stream.control.gate.load_at_start`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from stream.control.active import ActiveModel
from stream.control.gate import prepare
from stream.control.records import (
    DEFAULT_LIMITS,
    MAX_REASON_CHARS,
    MODEL_PREFIX,
    ModelAnnouncement,
    ReloadStatus,
    describe_failure,
    key_role,
    last_good_key,
    model_key,
    moves_back,
    utc_now,
)
from stream.control.signing import SignatureError, Verifier
from stream.errors import BrokerError, ConfigError
from stream.events import ModelRef
from stream.inference.golden import GOLDEN_TOLERANCE
from stream.inference.session import OnnxModel
from stream.kafka.compacted import CompactedReader, CompactedRecord, latest_per_key
from stream.kafka.config import KafkaClientConfig
from stream.roles import Role
from stream.settings import ControlLimits
from stream.types import AnySend, DeviceChoice

log = logging.getLogger(__name__)

RETRY_S = 5.0  # control follower: wait after a broker error


@dataclass(frozen=True)
class ReloadPolicy:
    """How a worker checks a new model: device, warm-up batch sizes, gate tolerance,
    and the bounds on control records."""

    device: DeviceChoice = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    tolerance: float = GOLDEN_TOLERANCE
    limits: ControlLimits = DEFAULT_LIMITS
    verifier: Verifier = field(default_factory=Verifier)


class ControlFollower:
    """Follows ``model/<role>`` on the control topic and hot-swaps ``slot``.

    Parameters
    ----------
    client, topic: the broker and the control topic.
    slot: the worker's :class:`ActiveModel` for ``role``.
    repo: the model repository announcement paths are resolved inside.
    worker, app_id: who reports the outcome (status key ``status/<worker>/<role>``).
    send: ``await send(topic, key, value)`` (the worker's producer) for status and
        ``last-good/<role>`` records; ``None``: statuses are only logged.
    status_topic: where ``send`` writes them (``Topics.control_status``; required with
        ``send``): never the control topic, which workers may not write.
    on_swap: called on the event loop after a swap with the new model's ref and its
        manifest's thresholds (``None``: single-label), before the next batch completes:
        ``Pipeline.serve``, so that new streams' summaries name it and the windows it
        scores are thresholded with its thresholds.
    refuse: other roles whose announcements this worker cannot apply live, with the
        reason it reports for each (e.g. the speaker model, whose enrollments are
        bound to its version).
    fixed: of those roles, the model this worker runs: an announcement of that very
        model is no refusal (it is what the worker serves).
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        topic: str,
        slot: ActiveModel,
        *,
        repo: Path,
        worker: str,
        app_id: str = "",
        role: Role = Role.LABEL,
        policy: ReloadPolicy = ReloadPolicy(),
        send: AnySend | None = None,
        on_swap: Callable[[ModelRef, tuple[float, ...] | None], None] | None = None,
        executor: Executor | None = None,
        refuse: Mapping[Role, str] | None = None,
        status_topic: str | None = None,
        fixed: Mapping[Role, ModelRef] | None = None,
    ) -> None:
        if send is not None and (status_topic is None or status_topic == topic):
            raise ConfigError(
                f"control follower of {topic}: statuses need a topic of their own "
                f"(status_topic, got {status_topic!r}): workers do not write the control topic"
            )
        self.client = client
        self.topic = topic
        self.status_topic = status_topic
        self.slot = slot
        self.repo = Path(repo)
        self.worker = worker
        self.app_id = app_id
        self.role = Role.parse(role)
        self.policy = policy
        self._send = send
        self._on_swap = on_swap
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tympan-reload")
        self._seen: ModelAnnouncement | None = None
        # the newest announcement this worker has served: versions only move forward
        self._floor: ModelAnnouncement | None = _serving(self.role, slot.ref)
        self._refuse = {Role.parse(r): why for r, why in (refuse or {}).items()}
        self._refused: dict[Role, ModelAnnouncement] = {}
        self._fixed = {Role.parse(r): ref for r, ref in (fixed or {}).items()}
        self._reported: dict[Role, ReloadStatus] = {}  # the last status written per role
        self._last_raw: dict[bytes, bytes | None] = {}
        self._last_good: bytes | None = None  # the last-good/<role> value last written
        self.statuses: list[ReloadStatus] = []

    async def run(self) -> None:
        """Replay the control topic, apply the latest announcement, then follow (cancel
        to stop).

        Records are contained one by one (:meth:`on_record` never raises); a failure
        of the reader itself (broker gone, a bug) is logged and the topic re-read
        after ``RETRY_S``: losing the follower must not stop a worker that serves fine,
        and re-reading applies nothing twice.
        """
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:
                log.error("control topic %s: %s; retrying in %.0f s", self.topic, exc, RETRY_S)
            except Exception:
                log.exception("control topic %s: follower failed; retrying", self.topic)
            await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        async with CompactedReader(self.client, self.topic) as reader:
            latest: dict[bytes, CompactedRecord] = {}
            async for batch in reader.replay():
                latest_per_key(self._mine(batch), latest)
            await self._apply_latest(latest)
            log.info("following model announcements for %r on %s", self.role, self.topic)
            async for batch in reader.follow(poll_ms=1000):
                await self._apply_latest(latest_per_key(self._mine(batch)))

    def _mine(self, batch: list[CompactedRecord]) -> list[CompactedRecord]:
        keys = self._keys
        return [r for r in batch if r.key in keys]

    async def _apply_latest(self, latest: Mapping[bytes, CompactedRecord]) -> None:
        for key, record in latest.items():  # only the newest announcement counts
            await self.on_record(key, record.value, where=record.where, headers=record.headers)

    @property
    def _keys(self) -> set[bytes]:
        """The announcements this worker answers; ``last-good/`` records live on the
        control-status topic, which workers write and this follower does not read."""
        return {model_key(role) for role in (self.role, *self._refuse)}

    async def on_record(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        where: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> ReloadStatus | None:
        """Apply one ``model/<role>`` record; returns the outcome (``None``: nothing new).

        Never raises for what the record holds: an undecodable record is refused like
        a model that fails its checks, and with trusted keys (``policy.verifier``) an
        unsigned or badly signed one is refused ``bad_signature`` before it is read.
        """
        if key is not None and key in self._last_raw and self._last_raw[key] == value:
            return None  # the same bytes again (a re-read): already answered
        self._last_raw[key or b""] = value
        if key == last_good_key(self.role):
            self._last_good = value
            return None
        try:
            self.policy.verifier.check(key, value, headers)
        except SignatureError as exc:
            return await self._refuse_unsigned(key, exc)
        try:
            announcement = ModelAnnouncement.from_record(
                key, value, where=where, limits=self.policy.limits
            )
        except ConfigError as exc:
            return await self._refuse_undecodable(key, exc)
        if announcement.role != self.role:
            return await self._refuse_role(announcement)
        backwards = moves_back(announcement, self._floor)
        if backwards is not None:
            return await self._refuse_older(announcement, backwards)
        if announcement == self._seen or announcement.ref == self.slot.ref:
            self._seen = self._floor = announcement
            await self._remember_good(announcement)
            return await self._confirm(announcement)  # already serving it
        self._seen = announcement
        return await self.apply(announcement)

    async def apply(self, announcement: ModelAnnouncement) -> ReloadStatus:
        """Load, check and swap in ``announcement``, or refuse it; report either way."""
        loop = asyncio.get_running_loop()
        log.info(
            "loading %s model %s beside %s", self.role, announcement.ref.tag, self.slot.ref.tag
        )
        try:
            model = await loop.run_in_executor(self._executor, self._prepare, announcement)
        except Exception as exc:  # any failure of any check (onnxruntime's too) refuses
            reason = describe_failure(exc)
            log.warning(
                "refused %s model %s (still serving %s): %s",
                self.role,
                announcement.ref.tag,
                self.slot.ref.tag,
                reason,
            )
            return await self._report(announcement, "refused", reason)
        old = self.slot.swap(model)
        self._floor = announcement
        if self._on_swap is not None:
            self._on_swap(self.slot.ref, model.manifest.thresholds)
        log.info("swapped %s model %s -> %s", self.role, old.tag, self.slot.ref.tag)
        status = await self._report(announcement, "active", f"replaced {old.tag}")
        await self._remember_good(announcement)
        return status

    async def _remember_good(self, announcement: ModelAnnouncement) -> None:
        """Write ``last-good/<role>`` if the topic does not hold this announcement yet.

        Not with trusted keys: a worker holds no publisher key, so its record could
        not be verified, and an unverifiable fallback is what signing shuts out.
        """
        value = announcement.to_json()
        if self._send is None or self._last_good == value or self.policy.verifier.enabled:
            return
        self._last_good = value
        await self._write(last_good_key(self.role), value, "last-good")

    async def _refuse_undecodable(self, key: bytes | None, exc: ConfigError) -> ReloadStatus | None:
        role = key_role(key, MODEL_PREFIX)
        log.warning("control topic %s: %s", self.topic, exc)
        if role is None:
            return None  # not a key this follower reads (direct calls only)
        unknown = ModelAnnouncement(role, "?", "?", "?", "?", "?", "?")
        return await self._report(unknown, "refused", str(exc)[:MAX_REASON_CHARS])

    async def _refuse_unsigned(self, key: bytes | None, exc: SignatureError) -> ReloadStatus | None:
        role = key_role(key, MODEL_PREFIX)
        log.warning("control topic %s: record %r refused: %s", self.topic, key, exc)
        if role is None:
            return None
        unknown = ModelAnnouncement(role, "?", "?", "?", "?", "?", "?")
        return await self._report(unknown, "refused", f"{exc.reason}: {exc}"[:MAX_REASON_CHARS])

    async def _confirm(self, announcement: ModelAnnouncement) -> ReloadStatus | None:
        """An announcement of the model this worker serves: nothing to load, but when
        the worker's last status for the role says something else (the refusal of an
        earlier announcement), report ``active`` so that ``tympan models active``
        shows the newest state. ``None``: nothing to report (e.g. loaded at start)."""
        last = self._reported.get(announcement.role)
        same = (announcement.name, announcement.version)
        if last is None or (last.state == "active" and (last.name, last.version) == same):
            return None
        self._refused.pop(announcement.role, None)
        tag = announcement.ref.tag
        log.info("%s model %s announced: already serving it", announcement.role, tag)
        return await self._report(announcement, "active", "already serving it")

    async def _refuse_older(self, announcement: ModelAnnouncement, why: str) -> ReloadStatus:
        log.warning(
            "refused %s model %s (still serving %s): %s",
            self.role,
            announcement.ref.tag,
            self.slot.ref.tag,
            why,
        )
        return await self._report(announcement, "refused", why[:MAX_REASON_CHARS])

    async def _refuse_role(self, announcement: ModelAnnouncement) -> ReloadStatus | None:
        if self._fixed.get(announcement.role) == announcement.ref:
            return await self._confirm(announcement)  # the model it runs: no swap needed
        why = self._refuse.get(announcement.role)
        if why is None or self._refused.get(announcement.role) == announcement:
            return None
        self._refused[announcement.role] = announcement
        log.warning("refused %s model %s: %s", announcement.role, announcement.ref.tag, why)
        return await self._report(announcement, "refused", why)

    def _prepare(self, announcement: ModelAnnouncement) -> OnnxModel:
        return prepare(
            announcement,
            repo=self.repo,
            serving=self.slot.model,
            device=self.policy.device,
            batch_sizes=self.policy.batch_sizes,
            tolerance=self.policy.tolerance,
        )

    async def _report(
        self, announcement: ModelAnnouncement, state: str, reason: str
    ) -> ReloadStatus:
        status = ReloadStatus(
            worker=self.worker,
            app_id=self.app_id,
            role=announcement.role,
            state=state,
            name=announcement.name,
            version=announcement.version,
            reason=reason,
            at=utc_now(),
        )
        self.statuses.append(status)
        self._reported[status.role] = status
        await self._write(status.key, status.to_json(), state)
        return status

    async def _write(self, key: bytes, value: bytes, what: str) -> None:
        if self._send is None or self.status_topic is None:
            return
        try:
            delivery = await self._send(self.status_topic, key, value)
            if inspect.isawaitable(delivery):
                await delivery  # the record is on the broker before we go on
        except Exception as exc:  # a lost status must not stop the follower
            log.error("cannot write %s record to %s: %r", what, self.status_topic, exc)


def _serving(role: Role, ref: ModelRef) -> ModelAnnouncement:
    """What a worker knows of the model it started with (no announcement: no time)."""
    return ModelAnnouncement(role, ref.name, ref.version, "?", "?", "?", "")
