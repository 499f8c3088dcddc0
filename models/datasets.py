"""Training data: a folder of labelled audio files → model windows, split by file.

Two layouts::

    DATA_DIR/<label>/*.wav|*.flac        one label per file  → task "single" (softmax)
    DATA_DIR/labels.csv                  columns ``path,tags``, tags ``;``-separated,
                                         paths relative to the CSV → task "multi" (sigmoid)

Files of any rate, length and channel count are decoded, down-mixed, resampled to
``spec.sr`` and cut into windows by the serving frontend (``stream.features``), so
a model learns on exactly the numbers the worker will feed it. Files that cannot
be used (unreadable, empty, digital silence) are reported by path in
:class:`Skipped` records and left out; the run goes on. A dataset that cannot be
trained on at all raises :class:`~stream.errors.DatasetError`.

The train/validation/test split is by *file* and stratified by label with a fixed
seed: the windows of one file never land in two splits, so held-out metrics are
never inflated by neighbouring windows of a training file.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from stream.errors import AudioFileError, DatasetError
from stream.features.spec import FeatureSpec
from stream.inference.evaluation import (
    LABELS_CSV,
    LabelledFile,
    files_from_csv,
    files_from_folders,
)

TaskChoice = Literal["auto", "single", "multi"]

# Peak below which a file counts as digital silence: under one 16-bit LSB
# (3e-5), so any real recording, even a quiet line, is kept.
SILENT_PEAK = 2.0**-20
# Fewest usable files per label: one each for train, validation and test.
MIN_FILES_PER_LABEL = 3


# One labelled audio file: ``path`` and its label (single) or tags (multi; may be
# empty: a negative for every tag). Evaluation lists datasets the same way.
Clip = LabelledFile


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file left out of training, and why (``reason`` is a short code)."""

    path: Path
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class DatasetIndex:
    """What a dataset folder holds, before any audio is decoded.

    Attributes
    ----------
    root: the folder (or the CSV's folder).
    task: ``"single"`` or ``"multi"``.
    labels: sorted label (tag) names; the order of the model's outputs.
    clips: every listed audio file.
    """

    root: Path
    task: Literal["single", "multi"]
    labels: tuple[str, ...]
    clips: tuple[Clip, ...]


@dataclass(frozen=True, slots=True)
class Split:
    """Clips per split; no file appears in two."""

    train: tuple[Clip, ...]
    val: tuple[Clip, ...]
    test: tuple[Clip, ...]

    def items(self) -> list[tuple[str, tuple[Clip, ...]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


@dataclass(slots=True)
class WindowSet:
    """Model inputs and targets of one split.

    Attributes
    ----------
    x: float32 ``[n, n_features, frames_per_window, 1]``.
    y: float32 ``[n, n_labels]`` (one-hot for single, multi-hot for multi).
    file_index: int ``[n]``, index of the window's file in ``clips``.
    clips: the files the windows came from.
    """

    x: np.ndarray
    y: np.ndarray
    file_index: np.ndarray
    clips: tuple[Clip, ...]

    def __len__(self) -> int:
        return int(self.x.shape[0])


# -- listing ---------------------------------------------------------------------------
def scan_dataset(path: str | Path, *, task: TaskChoice = "auto") -> DatasetIndex:
    """List the labelled files of a dataset folder (or ``labels.csv``).

    Parameters
    ----------
    path : str or Path
        A folder with one sub-folder per label, a folder holding ``labels.csv``,
        or the CSV itself.
    task : {"auto", "single", "multi"}
        ``"auto"`` picks ``"multi"`` when a ``labels.csv`` is present.

    Raises
    ------
    DatasetError
        Missing folder, no audio files, fewer than two labels, or a CSV whose
        columns are not ``path,tags``.
    """
    root = Path(path)
    csv_path = root if root.suffix.lower() == ".csv" else root / LABELS_CSV
    if not root.exists():
        raise DatasetError(f"dataset {str(root)!r} does not exist")
    if task == "multi" or (task == "auto" and csv_path.is_file()):
        if not csv_path.is_file():
            raise DatasetError(f"dataset {str(root)!r}: task 'multi' needs {LABELS_CSV}")
        clips = files_from_csv(csv_path)
        index_root, resolved = csv_path.parent, "multi"
    else:
        if not root.is_dir():
            raise DatasetError(f"dataset {str(root)!r} is not a folder")
        clips = files_from_folders(root)
        index_root, resolved = root, "single"
    labels = check_labels(index_root, clips)
    return DatasetIndex(index_root, resolved, labels, tuple(clips))  # type: ignore[arg-type]


def check_labels(
    root: Path, clips: Sequence[Clip], skipped: Sequence[Skipped] = ()
) -> tuple[str, ...]:
    """Sorted labels of ``clips``; raises ``DatasetError`` unless there are two or more.

    ``skipped`` files are named in the message, so "empty" after decoding says why.
    """
    labels = tuple(sorted({tag for clip in clips for tag in clip.labels}))
    why = ""
    if skipped:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        why = f"; {len(skipped)} file(s) were skipped: {shown}{more}"
    if not clips:
        raise DatasetError(
            f"dataset {str(root)!r} is empty: no usable audio files in label sub-folders "
            f"(or rows in {LABELS_CSV}){why}"
        )
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "none"
        raise DatasetError(
            f"dataset {str(root)!r} has a single class ({found}); training needs at least "
            f"2 labels{why}"
        )
    return labels


# -- decoding --------------------------------------------------------------------------
class AudioCache:
    """Decoded, resampled waveforms and their features, kept in memory for one run.

    Why a cache: augmented copies, threshold tuning and reports revisit the same
    files; each file is decoded and featurized once per (file, copy).
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._audio: dict[Path, np.ndarray] = {}
        self._features: dict[tuple[Path, int], np.ndarray] = {}

    def audio(self, path: Path) -> np.ndarray:
        """Mono float32 waveform of ``path`` at ``spec.sr``; raises ``AudioFileError``."""
        if path not in self._audio:
            self._audio[path] = _load_audio(path, self.spec.sr)
        return self._audio[path]

    def windows(
        self, path: Path, copy: int = 0, transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """Model windows ``[n, n_features, frames_per_window, 1]`` of one file.

        ``copy`` > 0 names an augmented version made by ``transform`` (cached by
        ``(path, copy)``, so a seeded transform is applied once).
        """
        key = (path, copy)
        if key not in self._features:
            y = self.audio(path)
            if transform is not None:
                y = transform(y)
            self._features[key] = clip_windows(y, self.spec, stream_id=str(path))
        return self._features[key]


def _problem(y: np.ndarray) -> tuple[str, str] | None:
    """Why a decoded file cannot be trained on (``reason``, ``detail``), or ``None``."""
    peak = float(np.max(np.abs(y)))
    if peak < SILENT_PEAK:
        return "silent_file", f"digital silence (peak {peak:.2e})"
    return None


def _load_audio(path: Path, sr: int) -> np.ndarray:
    from stream.audio.files import load_audio

    y, _ = load_audio(path, sr=sr, mono=True)
    return np.asarray(y, dtype=np.float32)


def clip_windows(y: np.ndarray, spec: FeatureSpec, *, stream_id: str = "") -> np.ndarray:
    """Cut a whole clip into model windows exactly as the streaming worker would.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono waveform at ``spec.sr``.
    spec : FeatureSpec
        The serving frontend.

    Returns
    -------
    np.ndarray [shape=(n_windows, n_features, frames_per_window, 1)]
        float32; a clip shorter than one window yields one padded window whatever
        ``spec.partial_window`` says, so short files still teach something.
    """
    from stream.features.offline import features, windows
    from stream.features.windows import stack_windows

    feats = features(y, spec)
    cut = windows(feats, spec, stream_id=stream_id)
    if not cut and feats.shape[1] > 0:  # spec drops partial windows; keep the clip anyway
        cut = windows(feats, dataclasses.replace(spec, partial_window="pad"), stream_id=stream_id)
    return stack_windows(cut, spec)


def load_clips(
    clips: Iterable[Clip], cache: AudioCache, *, progress: bool = False
) -> tuple[list[Clip], list[Skipped]]:
    """Decode every clip once; keep the usable ones, report the rest by path."""
    usable, skipped = [], []
    for clip in _progress(list(clips), "decoding", progress):
        try:
            y = cache.audio(clip.path)
        except AudioFileError as exc:
            skipped.append(Skipped(clip.path, exc.reason, exc.detail))
            continue
        problem = _problem(y)
        if problem is None and cache.windows(clip.path).shape[0] == 0:
            problem = "too_short", f"{y.size} samples is shorter than one STFT frame"
        if problem is not None:
            skipped.append(Skipped(clip.path, *problem))
            continue
        usable.append(clip)
    return usable, skipped


# -- splitting -------------------------------------------------------------------------
def split_by_file(
    clips: Sequence[Clip],
    *,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Split:
    """Stratified train/val/test split of files with a fixed seed.

    Files are grouped by their label (single) or by their rarest tag (multi), each
    group is shuffled with ``seed`` and cut by the fractions, with at least one file
    of each group in validation and test. The same clips and seed always give the
    same split.

    Raises
    ------
    DatasetError
        A label with fewer than ``MIN_FILES_PER_LABEL`` usable files.
    """
    tag_counts = Counter(tag for clip in clips for tag in clip.labels)
    groups: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        key = min(clip.labels, key=lambda t: (tag_counts[t], t)) if clip.labels else ""
        groups[key].append(clip)
    too_few = {k: n for k, n in tag_counts.items() if n < MIN_FILES_PER_LABEL}
    if too_few:
        listed = ", ".join(f"{k!r}: {n}" for k, n in sorted(too_few.items()))
        raise DatasetError(
            f"labels with fewer than {MIN_FILES_PER_LABEL} usable files "
            f"(one each for train, validation, test): {listed}"
        )
    rng = np.random.default_rng(seed)
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda c: str(c.path))
        order = rng.permutation(len(members))
        n_test, n_val = _held_out_counts(len(members), val_fraction, test_fraction)
        test += [members[i] for i in order[:n_test]]
        val += [members[i] for i in order[n_test : n_test + n_val]]
        train += [members[i] for i in order[n_test + n_val :]]
    return Split(tuple(train), tuple(val), tuple(test))


def _held_out_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    if n < MIN_FILES_PER_LABEL:  # multi-label: a small group of a common tag
        return (1 if n == 2 else 0), 0
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    return n_test, n_val


# -- windows ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How one split becomes windows: which copies of each file, made how."""

    copies: int = 0
    transform: Callable[[np.ndarray, int, tuple[str, ...]], np.ndarray] | None = field(default=None)


def window_set(
    clips: Sequence[Clip],
    labels: Sequence[str],
    cache: AudioCache,
    *,
    plan: WindowPlan | None = None,
    progress: bool = False,
    desc: str = "features",
) -> WindowSet:
    """Windows and targets of ``clips``; each window inherits its file's labels.

    ``plan.transform(y, key, labels)`` makes augmented copy ``key`` (1..copies) of a
    file with those labels.
    """
    plan = plan or WindowPlan()
    position = {label: i for i, label in enumerate(labels)}
    xs, ys, owners = [], [], []
    for i, clip in enumerate(_progress(list(clips), desc, progress)):
        target = np.zeros(len(labels), dtype=np.float32)
        for tag in clip.labels:
            target[position[tag]] = 1.0
        for copy in range(plan.copies + 1):
            transform = None
            if copy and plan.transform is not None:
                transform = _bind(plan.transform, _copy_key(clip.path, copy), clip.labels)
            w = cache.windows(clip.path, copy, transform)
            xs.append(w)
            ys.append(np.repeat(target[None, :], w.shape[0], axis=0))
            owners.append(np.full(w.shape[0], i, dtype=np.int64))
    shape = (0, *cache.spec.input_shape)
    return WindowSet(
        x=np.concatenate(xs) if xs else np.zeros(shape, dtype=np.float32),
        y=np.concatenate(ys) if ys else np.zeros((0, len(labels)), dtype=np.float32),
        file_index=np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64),
        clips=tuple(clips),
    )


def _copy_key(path: Path, copy: int) -> int:
    """A per-(file, copy) integer that does not depend on Python's hash seed."""
    import zlib

    return zlib.crc32(f"{path}#{copy}".encode())


def _bind(
    transform: Callable[[np.ndarray, int, tuple[str, ...]], np.ndarray],
    key: int,
    labels: tuple[str, ...],
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda y: transform(y, key, labels)


def _progress(items: list[Clip], desc: str, enabled: bool) -> Iterable[Clip]:
    if not enabled:
        return items
    from tqdm import tqdm

    bar: Iterable[Clip] = tqdm(items, desc=desc, unit="file", leave=False)
    return bar
