"""The corpus's boundary with the Debian tools it renders with.

Every external program is reached through :func:`run_tool`, so a missing tool or
a failed render always surfaces as one :class:`~stream.errors.ToolError` whose
message names the program, the command and ``scripts/setup-system.sh``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence

from stream.errors import ToolError

SETUP_HINT = "install it with scripts/setup-system.sh"


@functools.cache
def _which(tool: str) -> str | None:
    return shutil.which(tool)


def has_tool(tool: str) -> bool:
    """Whether ``tool`` is on ``PATH`` (cached for the life of the process)."""
    return _which(tool) is not None


def require_tool(tool: str) -> str:
    """Return the absolute path of ``tool``, or raise a ToolError naming the fix."""
    path = _which(tool)
    if path is None:
        raise ToolError(f"required program {tool!r} is not on PATH; {SETUP_HINT}")
    return path


def run_tool(
    args: Sequence[str], *, input_bytes: bytes | None = None, timeout_s: float = 120.0
) -> bytes:
    """Run an external program and return its stdout.

    Parameters
    ----------
    args:
        The command; ``args[0]`` is looked up on ``PATH`` first so a missing
        program fails with the setup hint rather than a bare ``FileNotFoundError``.
    input_bytes:
        Bytes for stdin (sox pipes), or ``None``.
    timeout_s:
        A hung synthesizer should fail one file, not stall a whole build.
    """
    exe = require_tool(args[0])
    try:
        done = subprocess.run(
            [exe, *args[1:]],
            input=input_bytes,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{args[0]} did not finish in {timeout_s:.0f} s: {_show(args)}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()[-500:]
        raise ToolError(f"{args[0]} exited with status {done.returncode}: {_show(args)}: {stderr}")
    return done.stdout


def _show(args: Sequence[str]) -> str:
    shown = " ".join(args)
    return shown if len(shown) < 300 else shown[:300] + " ..."
