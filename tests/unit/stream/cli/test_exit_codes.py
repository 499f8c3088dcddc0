"""One exit status per kind of failure, whichever command meets it.

A wrong ``--broker`` used to end ``tympan produce`` with 1 and ``tail``/``worker`` with
2, with a raw ``KafkaConnectionError(... AddressFamily.AF_INET ...)`` as the only
explanation. Every command now says that no broker answered there and what to do, and
exits with :attr:`ExitCode.BROKER`. No broker is needed: the point is that none answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli.exit_codes import EPILOG, ExitCode, for_error
from stream.errors import AudioFileError, BrokerError, ConfigError, ModelError

TYMPAN = Path(sys.executable).with_name("tympan")


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tympan(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYMPAN_")}
    return subprocess.run(
        [str(TYMPAN), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_error_tree_maps_onto_the_codes() -> None:
    assert for_error(BrokerError("down")) == ExitCode.BROKER == 3
    assert for_error(ConfigError("bad")) == ExitCode.USAGE == 2
    assert for_error(ModelError("refused")) == ExitCode.USAGE
    assert for_error(AudioFileError("unreadable_file", "x", path="x")) == ExitCode.INPUT == 1


def test_help_lists_every_code() -> None:
    for code in ExitCode:
        assert f"  {code.value:<4} " in EPILOG


def test_the_runtime_failure_code_is_the_workers() -> None:
    from stream.cli.ingest import EXIT_FATAL as INGEST_FATAL
    from stream.worker.build import EXIT_FATAL as WORKER_FATAL

    assert WORKER_FATAL == INGEST_FATAL == ExitCode.FATAL


@pytest.mark.parametrize(
    "command",
    [
        ["produce", "--fast", "--no-progress", "call.wav"],
        ["tail", "--max", "1"],
        ["worker", "--processes", "1", "--web-port", "0"],
        ["topics", "list"],
        ["models", "active"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_wrong_broker_is_named_with_the_fix_and_one_exit_code(command: list[str]) -> None:
    broker = f"127.0.0.1:{_dead_port()}"
    done = _tympan(*command, "--broker", broker)
    assert done.returncode == ExitCode.BROKER, done.stderr
    assert f"no Kafka broker answered at {broker}: is Kafka running there?" in done.stderr
    assert "make kafka-up" in done.stderr and "--broker" in done.stderr
    assert "AddressFamily" not in done.stderr


def test_a_listener_that_closes_the_connection_is_not_called_absent() -> None:
    """Something answers but hangs up (a TLS listener, another service): the message says
    the broker refused us and why it may have, not "is Kafka running there?"."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        done = _tympan("topics", "list", "--broker", f"127.0.0.1:{port}")
    finally:
        server.close()
    assert done.returncode == ExitCode.BROKER, done.stderr
    assert f"the Kafka broker at 127.0.0.1:{port} refused the connection" in done.stderr
    assert "it may require TLS and/or SASL" in done.stderr
    assert "is Kafka running there?" not in done.stderr
