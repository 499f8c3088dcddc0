"""Model references resolve to a directory: path, name, name/version, latest by natural sort."""

from __future__ import annotations

from pathlib import Path

import pytest

import stream
from stream.errors import ModelError
from stream.features.spec import FeatureSpec
from stream.inference.repository import (
    default_repo,
    list_models,
    resolve_model_dir,
    version_key,
)
from stream.roles import DEFAULT_MODELS, Role
from tests.support.onnx_models import make_tiny_model_dir


@pytest.fixture
def repo(tmp_path: Path, spec: FeatureSpec) -> Path:
    root = tmp_path / "zoo"
    names = [("scene", "2"), ("scene", "10"), ("scene", "9"), ("speaker-embed", "1.0")]
    for name, version in names:
        make_tiny_model_dir(
            root / name / version, spec=spec, labels=["q", "l"], name=name, version=version
        )
    (root / "scene" / "11").mkdir()  # no manifest: not a version
    return root


def test_version_sort_is_natural() -> None:
    versions = ["10", "9", "1.10.0", "1.2.0", "2"]
    assert sorted(versions, key=version_key) == ["1.2.0", "1.10.0", "2", "9", "10"]


def test_resolve_forms(repo: Path) -> None:
    assert resolve_model_dir(None, repo=repo) == repo / "scene" / "10"
    assert resolve_model_dir(None, repo=repo, role=Role.SPEAKER) == repo / "speaker-embed" / "1.0"
    assert resolve_model_dir("scene", repo=repo) == repo / "scene" / "10"
    assert resolve_model_dir("scene/9", repo=repo) == repo / "scene" / "9"
    assert resolve_model_dir(repo / "scene" / "2", repo=repo) == repo / "scene" / "2"
    assert resolve_model_dir(str(repo / "scene"), repo=Path("/nonexistent")) == (
        repo / "scene" / "10"
    )


def test_a_default_file_pins_the_version_a_name_resolves_to(repo: Path) -> None:
    """A newer version published beside the served one is reachable by name/version only."""
    (repo / "scene" / "DEFAULT").write_text("9\n")
    assert resolve_model_dir(None, repo=repo) == repo / "scene" / "9"
    assert resolve_model_dir("scene", repo=repo) == repo / "scene" / "9"
    assert resolve_model_dir("scene/10", repo=repo) == repo / "scene" / "10"
    assert list_models(repo) == {"scene": ["2", "9", "10"], "speaker-embed": ["1.0"]}


def test_a_default_file_naming_no_version_is_refused_with_the_versions(repo: Path) -> None:
    (repo / "scene" / "DEFAULT").write_text("11\n")  # a folder without a manifest
    with pytest.raises(ModelError, match=r"names version '11', but .* holds \['2', '9', '10'\]"):
        resolve_model_dir(None, repo=repo)


def test_list_models(repo: Path) -> None:
    assert list_models(repo) == {"scene": ["2", "9", "10"], "speaker-embed": ["1.0"]}


def test_unknown_reference_lists_inventory(repo: Path) -> None:
    with pytest.raises(ModelError, match=r"'music'.*scene \(2, 9, 10\), speaker-embed \(1\.0\)"):
        resolve_model_dir("music", repo=repo)


def test_a_role_without_its_default_model_says_which_model(tmp_path: Path, repo: Path) -> None:
    """The role is what the model does; the default is a model name in the repository."""
    for name in DEFAULT_MODELS.values():
        (repo / name).rename(tmp_path / name)
    with pytest.raises(ModelError, match="default speaker model 'speaker-embed': no versions"):
        resolve_model_dir(None, repo=repo, role=Role.SPEAKER)
    with pytest.raises(ModelError, match="default label model 'scene': no versions"):
        resolve_model_dir(None, repo=repo)


def test_default_repo_is_models_zoo_of_this_checkout() -> None:
    assert default_repo() == Path(stream.__file__).resolve().parents[1] / "models" / "zoo"
