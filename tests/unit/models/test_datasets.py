"""Dataset listing, decoding, skipping and the split by file (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.datasets import (
    AudioCache,
    Clip,
    check_labels,
    clip_windows,
    load_clips,
    scan_dataset,
    split_by_file,
    window_set,
)
from stream.errors import DatasetError
from stream.features.spec import FeatureSpec

SPEC = FeatureSpec()


def test_folders_give_single_label_clips_sorted(make_dataset) -> None:
    root = make_dataset(files_per_label=4)
    index = scan_dataset(root)
    assert index.task == "single"
    assert index.labels == ("chirp", "noise", "tone")
    assert len(index.clips) == 12
    assert all(c.labels == (c.path.parent.name,) for c in index.clips)


def test_missing_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nope")


def test_empty_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "speech").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        scan_dataset(tmp_path)


def test_single_class_is_a_dataset_error(make_dataset) -> None:
    root = make_dataset(files_per_label=3, labels=("tone",))
    with pytest.raises(DatasetError, match=r"single class \(only 'tone'\)"):
        scan_dataset(root)


def test_csv_with_unknown_columns_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,tags,genre\na.wav,piano,jazz\n")
    with pytest.raises(DatasetError, match="unknown: genre"):
        scan_dataset(tmp_path)


def test_csv_without_tags_column_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path\na.wav\n")
    with pytest.raises(DatasetError, match="missing: tags"):
        scan_dataset(tmp_path)


def test_csv_gives_multi_label_clips_relative_to_the_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "path,tags\nclips/a.wav,piano; drums\nclips/b.wav,bass\nclips/c.wav,\n"
    )
    index = scan_dataset(tmp_path)
    assert index.task == "multi"
    assert index.labels == ("bass", "drums", "piano")
    assert index.clips[0] == Clip(tmp_path / "clips" / "a.wav", ("drums", "piano"))
    assert index.clips[2].labels == ()


def test_unusable_files_are_skipped_by_path_and_the_rest_kept(make_dataset) -> None:
    root = make_dataset(files_per_label=3)
    (root / "tone" / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(root / "noise" / "zeros.wav", np.zeros(8000, dtype=np.float32), 8000)
    sf.write(root / "chirp" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    index = scan_dataset(root)
    usable, skipped = load_clips(index.clips, AudioCache(SPEC))
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "broken.wav": "unreadable_file",
        "zeros.wav": "silent_file",
        "empty.wav": "empty_file",
    }
    assert len(usable) == 9
    assert check_labels(root, usable, skipped) == ("chirp", "noise", "tone")


def test_all_files_unusable_names_them_in_the_error(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        sf.write(tmp_path / label / "zeros.wav", np.zeros(4000, dtype=np.float32), 16000)
    index = scan_dataset(tmp_path)
    usable, skipped = load_clips(index.clips, AudioCache(SPEC))
    with pytest.raises(DatasetError, match=r"empty.*2 file\(s\) were skipped.*zeros.wav"):
        check_labels(tmp_path, usable, skipped)


def _clips(n_per_label: dict[str, int]) -> list[Clip]:
    return [
        Clip(Path(f"/d/{label}/{i}.wav"), (label,))
        for label, n in n_per_label.items()
        for i in range(n)
    ]


def test_split_is_by_file_stratified_and_deterministic() -> None:
    clips = _clips({"a": 20, "b": 7, "c": 3})
    split = split_by_file(clips, seed=3)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(clips)
    assert set().union(*parts) == set(clips)
    assert all(not (p & q) for i, p in enumerate(parts) for q in parts[i + 1 :])
    for part in (split.val, split.test):
        assert {c.labels[0] for c in part} == {"a", "b", "c"}
    assert split_by_file(list(reversed(clips)), seed=3) == split
    assert split_by_file(clips, seed=4) != split


def test_label_with_too_few_files_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match="'b': 2"):
        split_by_file(_clips({"a": 5, "b": 2}), seed=0)


def test_windows_of_one_file_never_land_in_two_splits(make_dataset) -> None:
    root = make_dataset(files_per_label=4)
    index = scan_dataset(root)
    cache = AudioCache(SPEC)
    usable, _ = load_clips(index.clips, cache)
    split = split_by_file(usable, seed=0)
    owners = {}
    for name, clips in split.items():
        windows = window_set(clips, index.labels, cache)
        assert windows.x.shape[1:] == SPEC.input_shape
        assert len(windows) >= len(clips)  # every file gives at least one window
        for i in np.unique(windows.file_index):
            owners.setdefault(windows.clips[i].path, set()).add(name)
        # targets are the file's label, one-hot
        assert np.all(windows.y.sum(axis=1) == 1)
    assert all(len(splits) == 1 for splits in owners.values())


def test_clip_windows_match_the_serving_window_count() -> None:
    y = np.random.default_rng(0).normal(0, 0.1, SPEC.sr * 3).astype(np.float32)
    x = clip_windows(y, SPEC)
    n_frames = 1 + (y.size - SPEC.n_fft) // SPEC.hop_length
    full = 1 + (n_frames - SPEC.frames_per_window) // SPEC.hop_frames
    assert x.shape[0] in (full, full + 1)  # + the padded tail window
    assert x.dtype == np.float32


def test_a_clip_shorter_than_a_window_still_gives_one_window() -> None:
    spec = FeatureSpec(partial_window="drop")
    y = np.random.default_rng(0).normal(0, 0.1, spec.sr // 3).astype(np.float32)
    assert clip_windows(y, spec).shape == (1, *spec.input_shape)
