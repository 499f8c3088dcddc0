"""A worker that trusts a publisher key, on the secure broker: signed announcements are
served, forged ones (unsigned, or signed by another key) are refused and reported,
even when they come from a principal allowed to write the control topic; a lower
version is refused until it is published as a signed rollback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import REPO, SecureBroker

from stream.features.spec import FeatureSpec
from tests.support.onnx_models import make_tiny_model_dir

TYMPAN = str(REPO / ".venv" / "bin" / "tympan")
LABELS = ("quiet", "loud")


def tympan(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TYMPAN, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )


def my_status(secure: SecureBroker, app_id: str) -> dict[str, Any] | None:
    """This worker's latest status record for the scene role (``tympan models active``)."""
    shown = tympan(["models", "active", "--json"], secure.env("tympan-admin"))
    assert shown.returncode == 0, shown.stderr
    mine = [w for w in json.loads(shown.stdout)["workers"] if w.get("app_id") == app_id]
    return mine[-1] if mine else None


def wait_for(what: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(1.0)
    raise AssertionError("timed out waiting")


def test_a_worker_serves_signed_announcements_and_refuses_forged_ones(
    secure: SecureBroker, tmp_path: Path
) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    for folder in (keys, other):
        made = tympan(["keys", "generate", "--out", str(folder)], secure.env("tympan-admin"))
        assert made.returncode == 0, made.stderr
    repo = tmp_path / "repo"
    for version in ("1", "2", "3", "4"):
        make_tiny_model_dir(
            repo / "tiny" / version, spec=FeatureSpec(), labels=LABELS, version=version
        )
    app_id = f"tympan-worker-{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [TYMPAN, "worker", "--model", str(repo / "tiny" / "1"), "--model-repo", str(repo),
         "--app-id", app_id, "--trusted-key", str(keys / "tympan-signing.pub"),
         "--data-dir", str(tmp_path / "data"), "--web-port", "0", "--processes", "1"],
        env=secure.env("tympan-worker"), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    admin = secure.env("tympan-admin")

    def publish(version: str, *extra: str) -> None:
        args = ["models", "publish", str(repo / "tiny" / version), "--model-repo", str(repo)]
        done = tympan([*args, *extra], admin)
        assert done.returncode == 0, done.stderr

    try:
        time.sleep(5)  # the follower is reading the topic (no status is expected yet)
        publish("2", "--signing-key", str(keys / "tympan-signing.key"))
        active = wait_for(lambda: (s := my_status(secure, app_id)) and s["state"] == "active" and s)
        assert active["version"] == "2"
        publish("3")  # the admin's credentials, but no signature
        unsigned = wait_for(
            lambda: (s := my_status(secure, app_id)) and s["state"] == "refused" and s
        )
        assert unsigned["reason"].startswith("bad_signature") and "not signed" in unsigned["reason"]
        publish("4", "--signing-key", str(other / "tympan-signing.key"))
        foreign = wait_for(
            lambda: (s := my_status(secure, app_id)) and "not trusted" in s["reason"] and s
        )
        assert foreign["state"] == "refused" and foreign["reason"].startswith("bad_signature")
        publish("1", "--signing-key", str(keys / "tympan-signing.key"))  # back, unasked
        older = wait_for(lambda: (s := my_status(secure, app_id)) and s["version"] == "1" and s)
        assert older["state"] == "refused" and older["reason"].startswith("older_version")
        publish("1", "--rollback", "--signing-key", str(keys / "tympan-signing.key"))
        rolled = wait_for(lambda: (s := my_status(secure, app_id)) and s["state"] == "active" and s)
        assert rolled["version"] == "1"
        assert worker.poll() is None
        text = (tmp_path / "worker.log").read_text(errors="replace")
        assert "swapped scene model tiny@1 -> tiny@2" in text
        assert "swapped scene model tiny@2 -> tiny@1" in text
        assert "-> tiny@3" not in text and "-> tiny@4" not in text
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
