"""Errors of live ingest.

::

    TympanError
    ├── InputError
    │   └── PacketError        one datagram or WebSocket message that cannot be used:
    │                          counted by ``reason``, logged, dropped; never a crash
    └── ContractError
        └── ConfigError        (``stream.errors``) a bad flag: refuse to start

A :class:`PacketError` names the source (``remote`` address or connection) so a log
line says which sender misbehaved; its ``reason`` is the metrics label
(``tympan_ingest_malformed_total{reason=...}``, listed in ``docs/ingest.md``).
"""

from __future__ import annotations

from stream.errors import InputError


class PacketError(InputError):
    """A datagram or message that is not what its protocol says; dropped and counted."""
