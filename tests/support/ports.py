"""Free local ports for servers a test or benchmark starts (ingest, metrics)."""

from __future__ import annotations

import random
import socket


def free_udp_ports(n: int) -> int:
    """The first of ``n`` consecutive free UDP ports on 127.0.0.1 (RTP listeners)."""
    for _ in range(200):
        first = random.randrange(20000, 60000 - n)
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free UDP ports on 127.0.0.1")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
