"""The pinned environment: pyproject.toml, requirements-dev.lock and what is installed agree.

The worker's app and batch sender lean on faust-streaming internals and were verified against
one release; a different one must fail here, not in production. The lock must also satisfy
every range pyproject.toml states, else ``make test`` installs a set the project never asked for.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKED_EXTRAS = ("cpu", "train", "dev")
#: The release stream/worker/app.py and producer.py were verified against. Change it only after
#: re-running the delivery and fault-injection tests on the new release.
VERIFIED_FAUST = "0.15.3"


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project: dict[str, Any] = tomllib.load(fh)["project"]
    return project


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements-dev.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _requirements() -> list[Requirement]:
    project = _pyproject()
    texts = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def test_faust_streaming_is_the_verified_release_everywhere() -> None:
    faust = [r for r in _requirements() if canonicalize_name(r.name) == "faust-streaming"]
    assert [str(r.specifier) for r in faust] == [f"=={VERIFIED_FAUST}"]
    assert _locked()["faust-streaming"] == VERIFIED_FAUST
    assert md.version("faust-streaming") == VERIFIED_FAUST


def test_lock_satisfies_every_pyproject_range() -> None:
    locked = _locked()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is missing from requirements-dev.lock: make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements-dev.lock pins {name}=={locked[name]}, outside {requirement}: make lock"
        )


def test_onnx_is_not_a_dependency_of_the_inference_worker() -> None:
    core = [canonicalize_name(Requirement(t).name) for t in _pyproject()["dependencies"]]
    assert "onnx" not in core
