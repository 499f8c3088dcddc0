"""One RTP stream: a bounded jitter buffer, then fixed-length frames for the audio topic.

Packets are put back in order by their extended sequence number (the 16-bit number
unwrapped against the highest one seen) and held at most ``jitter_ms`` after the
oldest held one arrived; then the missing ones are given up as lost. Released
packets are written at their place in the stream, which is their RTP timestamp
(unwrapped over 32 bits) minus the first packet's, into frames of ``chunk_ms``.

Frame ``k`` of a stream holds samples ``[k*N, (k+1)*N)`` and has ``seq = k``, so:

* a frame that a lost packet touches is **not sent**: the seq gap makes the worker
  zero-fill it and flag its windows ``gap`` (``stream/pipeline/sequencing.py``), instead of
  silence that pretends to be audio;
* a frame that received no packet at all (silence suppression, a long outage) is not
  sent either, for the same reason and so that a timestamp jump costs nothing;
* a frame partly covered without loss (timestamps that skip a little) has its holes
  filled with the encoding's silence and is sent;
* ``capture_us`` of frame ``k`` is the first packet's arrival plus ``k*N`` samples.

Everything here is synchronous and takes the time as an argument, so tests drive it
packet by packet; :mod:`stream.ingest.rtp_endpoint` calls it from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.errors import ConfigError
from stream.ingest.payloads import PayloadFormat
from stream.ingest.rtp import RtpPacket
from stream.wire.frame import AudioFrame

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_LOST_KEPT = 256  # given-up seqs remembered, to call a packet that comes later "late"


@dataclass(frozen=True, slots=True)
class JitterPolicy:
    """Limits of one RTP stream's state; every field bounds memory or delay.

    Attributes
    ----------
    chunk_ms: frame length on the audio topic.
    jitter_ms: how long a packet waits for missing earlier ones before they count as lost.
    max_packets: packets held per stream; past this the missing ones are given up early.
        With ``max_payload_bytes`` it bounds a stream's buffer (64 × 4 KiB = 256 KiB).
    max_dropout: a sequence number this far ahead of the highest seen is refused
        (``out_of_range``), as is one more than ``max_misorder`` behind (RFC 3550 A.1);
        but two in a row that follow each other mean the sender restarted its
        sequence: the stream carries on from the second (placed by its timestamp).
    max_misorder: see ``max_dropout``.
    """

    chunk_ms: float = 100.0
    jitter_ms: float = 60.0
    max_packets: int = 64
    max_dropout: int = 3000
    max_misorder: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_ms <= 10_000:
            raise ConfigError(f"chunk_ms {self.chunk_ms} is outside 1..10000")
        if not 0 <= self.jitter_ms <= 10_000:
            raise ConfigError(f"jitter_ms {self.jitter_ms} is outside 0..10000")
        if self.max_packets < 1:
            raise ConfigError(f"max_packets {self.max_packets} must be at least 1")


@dataclass(slots=True)
class StreamCounts:
    """What one stream saw (summed into the Prometheus counters on scrape)."""

    packets: int = 0
    payload_bytes: int = 0
    lost: int = 0
    duplicates: int = 0
    late: int = 0
    reordered: int = 0
    out_of_range: int = 0
    other_payload: int = 0
    frames: int = 0
    frames_skipped: int = 0

    def add(self, other: StreamCounts) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class _Held:
    ts: int  # extended timestamp
    data: bytes
    arrival_us: int


@dataclass(slots=True)
class RtpStream:
    """The state of one RTP stream (one SSRC from one source), first packet included.

    Use :meth:`start`, then :meth:`push` each packet, :meth:`tick` now and then
    (releases packets held past ``jitter_ms``) and :meth:`close` at BYE or inactivity;
    each returns the frames to send, in order.
    """

    stream_id: str
    fmt: PayloadFormat
    policy: JitterPolicy
    anchor_us: int
    ssrc: int
    ts0: int
    last_arrival_us: int
    payload_type: int = 0
    instance: str | None = None  # the instance header of this stream's frames
    counts: StreamCounts = field(default_factory=StreamCounts)
    jitter: float = 0.0  # RFC 3550 A.8 interarrival jitter, in timestamp units
    _max_ext: int = 0
    _next: int = 0
    _held: dict[int, _Held] = field(default_factory=dict)
    _lost: set[int] = field(default_factory=set)
    _ts_ref: int = 0
    _transit: float | None = None
    _chunk: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _covered: int = 0
    _filled_to: int = 0  # bytes of _buf written (the furthest)
    _lossy: bool = False
    _written_end: int = 0  # stream sample offset after the last released packet
    _gave_up: bool = False
    _closed: bool = False
    _primed: bool = False  # the first packets wait jitter_ms: an earlier one may come
    _seq_shift: int = 0  # added to every sequence number since a restart (mod 2**16)
    _bad_seq: int | None = None  # the number that would confirm a restart
    _n: int = 0  # samples per frame

    @classmethod
    def start(
        cls,
        packet: RtpPacket,
        *,
        stream_id: str,
        fmt: PayloadFormat,
        policy: JitterPolicy,
        arrival_us: int,
        instance: str | None = None,
    ) -> tuple[RtpStream, list[AudioFrame]]:
        """A new stream from its first packet (the anchor of sequence, timestamp and time)."""
        stream = cls(
            stream_id=stream_id,
            fmt=fmt,
            policy=policy,
            anchor_us=arrival_us,
            ssrc=packet.ssrc,
            ts0=packet.timestamp,
            last_arrival_us=arrival_us,
            payload_type=packet.payload_type,
            instance=instance,
            _max_ext=_SEQ_MOD + packet.seq,  # headroom: a slightly earlier packet stays >= 0
            _next=_SEQ_MOD + packet.seq,
            _ts_ref=packet.timestamp,
        )
        stream._n = max(1, round(fmt.sr * policy.chunk_ms / 1000))
        stream._buf = bytearray(fmt.silence * stream._n)
        return stream, stream.push(packet, arrival_us)

    @property
    def held(self) -> int:
        """Packets waiting in the jitter buffer."""
        return len(self._held)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.fmt.sr

    def push(self, packet: RtpPacket, arrival_us: int) -> list[AudioFrame]:
        """Take one packet of this stream; return the frames it completes."""
        c = self.counts
        c.packets += 1
        c.payload_bytes += len(packet.payload)
        self.last_arrival_us = arrival_us
        if self._closed:
            c.late += 1
            return []
        seq = (packet.seq + self._seq_shift) % _SEQ_MOD
        ext = self._extend_seq(seq)
        if ext is None:
            if packet.seq != self._bad_seq:
                c.out_of_range += 1
                self._bad_seq = (packet.seq + 1) % _SEQ_MOD
                return []
            # RFC 3550 A.1: a second packet in the new sequence; continue from it
            self._seq_shift = (self._max_ext + 1 - packet.seq) % _SEQ_MOD
            ext = self._max_ext + 1
        self._bad_seq = None
        if (self._primed and ext < self._next) or ext in self._held:
            if ext in self._lost:
                c.late += 1
            else:
                c.duplicates += 1
            return []
        if ext < self._max_ext:
            c.reordered += 1
        else:
            self._max_ext = ext
        ts = self._extend_ts(packet.timestamp)
        self._observe_jitter(ts, arrival_us)
        if packet.payload_type == self.payload_type:
            data = self.fmt.to_wire(packet.payload)
        else:  # DTMF (telephone-event), comfort noise: in sequence, but no audio here
            c.other_payload += 1
            data = b""
        self._held[ext] = _Held(ts, data, arrival_us)
        out: list[AudioFrame] = []
        if not self._primed and arrival_us - self.anchor_us >= self.policy.jitter_ms * 1000:
            self._prime()
        self._release_in_order(out)
        if len(self._held) > self.policy.max_packets:
            self._give_up(out)
        return out

    def _prime(self) -> None:
        """Start releasing at the earliest packet seen so far; it becomes sample 0."""
        first = min(self._held)
        earliest = self._held[first]
        shift = self.ts0 - earliest.ts  # > 0 when an earlier packet came second
        self.anchor_us -= shift * 1_000_000 // self.fmt.sr
        self.ts0 = earliest.ts
        self._next = first
        self._primed = True

    def tick(self, now_us: int) -> list[AudioFrame]:
        """Give up on missing packets that held ones have waited ``jitter_ms`` for."""
        if not self._held:
            return []
        if not self._primed:
            if now_us - self.anchor_us < self.policy.jitter_ms * 1000:
                return []
            self._prime()
        oldest = min(h.arrival_us for h in self._held.values())
        if now_us - oldest < self.policy.jitter_ms * 1000:
            return []
        out: list[AudioFrame] = []
        self._give_up(out)
        return out

    def close(self) -> list[AudioFrame]:
        """End of stream (BYE, inactivity, shutdown): release everything, then EOS."""
        if self._closed:
            return []
        out: list[AudioFrame] = []
        if self._held and not self._primed:
            self._prime()
        while self._held:
            self._give_up(out)
        self._closed = True
        sendable = self._covered > 0 and not self._lossy
        payload = bytes(self._buf[: self._filled_to]) if sendable else b""
        out.append(self._frame(self._chunk, payload, eos=True))
        return out

    # -- ordering ------------------------------------------------------------------------

    def _extend_seq(self, seq: int) -> int | None:
        delta = (seq - self._max_ext) % _SEQ_MOD
        if delta >= _SEQ_MOD // 2:
            delta -= _SEQ_MOD
        if delta > self.policy.max_dropout or delta < -self.policy.max_misorder:
            return None
        return self._max_ext + delta

    def _extend_ts(self, ts: int) -> int:
        delta = (ts - self._ts_ref) % _TS_MOD
        if delta >= _TS_MOD // 2:
            delta -= _TS_MOD
        ext = self._ts_ref + delta
        self._ts_ref = ext
        return ext

    def _observe_jitter(self, ts: int, arrival_us: int) -> None:
        transit = arrival_us * self.fmt.sr / 1e6 - ts
        if self._transit is not None:
            self.jitter += (abs(transit - self._transit) - self.jitter) / 16
        self._transit = transit

    def _release_in_order(self, out: list[AudioFrame]) -> None:
        if not self._primed:
            return
        held = self._held
        while self._next in held:
            self._write(held.pop(self._next), out)
            self._next += 1

    def _give_up(self, out: list[AudioFrame]) -> None:
        if not self._primed:
            self._prime()
        first = min(self._held)
        missing = first - self._next
        if missing > 0:
            self.counts.lost += missing
            self._gave_up = True
            for s in range(self._next, first):
                if len(self._lost) < _LOST_KEPT:
                    self._lost.add(s)
            self._next = first
        self._release_in_order(out)

    # -- assembly ------------------------------------------------------------------------

    def _write(self, packet: _Held, out: list[AudioFrame]) -> None:
        block = self.fmt.block
        offset = packet.ts - self.ts0
        data = packet.data
        n = len(data) // block
        start = self._chunk * self._n
        if n and offset + n <= start:
            # Released in sequence order, yet wholly before frames already sent: the
            # sender's clock jumped back (a restart), not the network. Carry on here.
            self.ts0 = packet.ts - max(self._written_end, start)
            offset = packet.ts - self.ts0
        if self._gave_up:
            self._gave_up = False
            self._mark_lossy(self._written_end, max(offset, self._written_end + 1), out)
        self._written_end = max(self._written_end, offset + n)
        if offset < start:  # overlaps frames already sent: keep the rest
            data, offset, n = data[(start - offset) * block :], start, n - (start - offset)
        while n > 0:
            chunk = offset // self._n
            if chunk > self._chunk:
                self._finish(out, next_chunk=chunk)
            pos = offset - chunk * self._n
            take = min(n, self._n - pos)
            self._buf[pos * block : (pos + take) * block] = data[: take * block]
            self._covered += take
            self._filled_to = max(self._filled_to, (pos + take) * block)
            data, offset, n = data[take * block :], offset + take, n - take
            if self._covered >= self._n:
                self._finish(out, next_chunk=self._chunk + 1)

    def _mark_lossy(self, start: int, end: int, out: list[AudioFrame]) -> None:
        """Samples ``[start, end)`` fell into lost packets: no frame they touch is sent."""
        first, last = start // self._n, (end - 1) // self._n
        if first <= self._chunk <= last:
            self._lossy = True
        if last > self._chunk:
            self._finish(out, next_chunk=last)
            self._lossy = True

    def _finish(self, out: list[AudioFrame], *, next_chunk: int) -> None:
        """Send the current frame if it may be sent; move on to ``next_chunk``."""
        if self._covered and not self._lossy:
            out.append(self._frame(self._chunk, bytes(self._buf), eos=False))
        else:
            self.counts.frames_skipped += 1
        self.counts.frames_skipped += max(0, next_chunk - self._chunk - 1)
        self._chunk = next_chunk
        self._buf[:] = self.fmt.silence * self._n
        self._covered = self._filled_to = 0
        self._lossy = False

    def _frame(self, seq: int, payload: bytes, *, eos: bool) -> AudioFrame:
        self.counts.frames += 1
        return AudioFrame(
            stream_id=self.stream_id,
            seq=seq,
            sample_rate=self.fmt.sr,
            encoding=self.fmt.encoding,
            channels=self.fmt.channels,
            capture_us=self.anchor_us + seq * self._n * 1_000_000 // self.fmt.sr,
            eos=eos,
            payload=payload,
            instance=self.instance,
        )
