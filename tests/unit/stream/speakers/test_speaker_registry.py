from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from speaker_fakes import DIM, MODEL, cluster

from stream.errors import RegistryError
from stream.speakers.registry import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    ModelBinding,
    SpeakerRegistry,
    load_registry,
    save_registry,
)


def test_round_trip_through_files(registry: SpeakerRegistry, tmp_path: Path) -> None:
    save_registry(registry, tmp_path / "reg")
    loaded = load_registry(tmp_path / "reg", model=MODEL)
    assert list(loaded) == list(registry) == ["alice", "bob", "carol", "dave"]
    for name in registry:
        np.testing.assert_allclose(
            loaded.speakers[name].embeddings, registry.speakers[name].embeddings, atol=1e-6
        )
        assert loaded.speakers[name].updated_at == registry.speakers[name].updated_at
    assert loaded.calibration.method == registry.calibration.method
    assert loaded.threshold == pytest.approx(registry.threshold, abs=1e-5)
    index = json.loads((tmp_path / "reg" / INDEX_FILE).read_text())
    assert index["model"] == {"name": "speaker-embed", "version": "1", "embedding_dim": DIM}
    with np.load(tmp_path / "reg" / EMBEDDINGS_FILE, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["s0", "s1", "s2", "s3"]


def test_missing_directory_is_an_empty_registry(tmp_path: Path) -> None:
    reg = load_registry(tmp_path / "nowhere", model=MODEL)
    assert len(reg) == 0 and reg.calibration.method == "default"


def test_with_speaker_replaces_and_without_removes(registry, rng, centres) -> None:  # type: ignore[no-untyped-def]
    newer = registry.with_speaker("alice", cluster(rng, centres["erin"], 3, 0.1), model=MODEL)
    assert newer.speakers["alice"].embeddings.shape == (3, DIM)
    assert registry.speakers["alice"].embeddings.shape == (24, DIM)  # immutable
    fewer = newer.without("bob")
    assert "bob" not in fewer and "bob" in newer


def test_unknown_name_on_remove_names_it(registry: SpeakerRegistry) -> None:
    with pytest.raises(RegistryError, match=r"'zoe' is not enrolled \(enrolled: alice, bob"):
        registry.without("zoe")


def test_embeddings_from_another_model_are_refused(registry, rng, centres) -> None:  # type: ignore[no-untyped-def]
    other = ModelBinding("speaker-embed", "2", DIM)
    with pytest.raises(RegistryError, match=r"speaker-embed/2 .* bound to speaker-embed/1"):
        registry.with_speaker("zoe", cluster(rng, centres["erin"], 3, 0.1), model=other)


def test_registry_of_another_model_is_refused_on_load(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    save_registry(registry, tmp_path)
    with pytest.raises(RegistryError, match=r"speaker-embed/9.*re-enroll"):
        load_registry(tmp_path, model=ModelBinding("speaker-embed", "9", DIM))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (INDEX_FILE, b"{not json"),
        (INDEX_FILE, b'{"format": "something-else"}'),
        (EMBEDDINGS_FILE, b"PK\x03\x04 truncated zip"),
        (EMBEDDINGS_FILE, None),
    ],
)
def test_corrupt_files_raise_registry_error_naming_the_file(
    registry: SpeakerRegistry, tmp_path: Path, name: str, content: bytes | None
) -> None:
    save_registry(registry, tmp_path)
    target = tmp_path / name
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    with pytest.raises(RegistryError, match=str(target).replace(".", r"\.")):
        load_registry(tmp_path, model=MODEL)


def test_pickled_arrays_are_refused(registry: SpeakerRegistry, tmp_path: Path) -> None:
    save_registry(registry, tmp_path)
    objects = {f"s{i}": np.array([{"evil": 1}], dtype=object) for i in range(4)}
    np.savez(tmp_path / EMBEDDINGS_FILE, **objects)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match=EMBEDDINGS_FILE):
        load_registry(tmp_path, model=MODEL)


@pytest.mark.parametrize("bad", ["", "unknown", "Unknown", " lead", "a/b", "x" * 65])
def test_bad_names_are_refused(registry, rng, centres, bad: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RegistryError, match="speaker name"):
        registry.with_speaker(bad, cluster(rng, centres["erin"], 3, 0.1), model=MODEL)


def test_wrong_shape_and_nan_are_refused(registry: SpeakerRegistry) -> None:
    with pytest.raises(RegistryError, match=r"shape \(3, 5\)"):
        registry.with_speaker("zoe", np.ones((3, 5)), model=MODEL)
    bad = np.ones((2, DIM))
    bad[0, 0] = np.nan
    with pytest.raises(RegistryError, match="NaN"):
        registry.with_speaker("zoe", bad, model=MODEL)


def test_empty_registry_scores_everything_unknown() -> None:
    scorer = SpeakerRegistry.empty(MODEL).scorer()
    assert [v.speaker for v in scorer.identify(np.ones((2, DIM)))] == ["unknown", "unknown"]
