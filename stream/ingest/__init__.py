"""Live telephony ingest: RTP and WebSocket media streams → frames on the audio topic.

The gateway a call-center platform points its media fork at (``tympan ingest``;
``docs/ingest.md``). Split by what each part holds:

* :mod:`~stream.ingest.rtp`: RFC 3550 packets and RTCP BYE, parsed from datagrams;
* :mod:`~stream.ingest.payloads`: RTP payload types → wire encodings (a registry);
* :mod:`~stream.ingest.jitter`: one RTP stream: jitter buffer, loss, frames;
* :mod:`~stream.ingest.rtp_endpoint`: datagram endpoints, streams by SSRC and source;
* :mod:`~stream.ingest.ws_protocols`: Twilio Media Streams and the plain PCM protocol;
* :mod:`~stream.ingest.ws_server`: the aiohttp WebSocket server (token, limits);
* :mod:`~stream.ingest.assembler`: in-order bytes → frames (WebSocket);
* :mod:`~stream.ingest.streamid`: stream-id templates;
* :mod:`~stream.ingest.sink`: the bounded queue in front of the Kafka producer;
* :mod:`~stream.ingest.metrics`: Prometheus metrics; :mod:`~stream.ingest.service`: a run.

Frames are sent with :func:`stream.produce.produce_frames`; nothing here reads
``os.environ`` (``stream/cli/ingest.py`` does).
"""

from __future__ import annotations

from stream.ingest.errors import PacketError
from stream.ingest.jitter import JitterPolicy, RtpStream, StreamCounts
from stream.ingest.metrics import IngestMetrics
from stream.ingest.payloads import PayloadFormat, payload_formats
from stream.ingest.rtp import RtpPacket, is_rtcp, parse_rtp, rtcp_bye_ssrcs
from stream.ingest.rtp_endpoint import RtpIngest, RtpSettings, parse_listen
from stream.ingest.service import run_rtp, run_ws
from stream.ingest.ws_server import WsSettings

__all__ = [
    "IngestMetrics",
    "JitterPolicy",
    "PacketError",
    "PayloadFormat",
    "RtpIngest",
    "RtpPacket",
    "RtpSettings",
    "RtpStream",
    "StreamCounts",
    "WsSettings",
    "is_rtcp",
    "parse_listen",
    "parse_rtp",
    "payload_formats",
    "rtcp_bye_ssrcs",
    "run_rtp",
    "run_ws",
]
