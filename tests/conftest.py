"""Fixtures for the whole test tree.

``artifacts_dir`` is ``<repo>/test-artifacts/`` (git-ignored): plots, reports and
other files a test writes for a human to look at after the run. Scratch files that
nobody needs afterwards belong in pytest's ``tmp_path``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``<repo>/test-artifacts/``, created on first use and kept after the run."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def test_artifacts(artifacts_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A directory under ``test-artifacts/`` for this one test, named after it."""
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "_", request.node.nodeid).strip("_")
    path = artifacts_dir / name
    path.mkdir(parents=True, exist_ok=True)
    return path
