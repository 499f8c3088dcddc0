"""Train the default CNN on a dataset folder and score it on held-out files.

One call does what ``tympan train`` does before export: list and decode the files
(:mod:`models.datasets`), split them by file, cut windows with the serving
frontend (augmenting training files on the waveform), fit with early stopping and
class weights, pick per-tag thresholds on validation data (multi-label), and
evaluate on the test files (:mod:`models.report`).

Reproducible: ``seed`` fixes the split, the augmentation, Keras' initializers and
shuffling, and TensorFlow runs with op determinism on ``threads`` threads.
TensorFlow is imported only here, inside functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models import report as reporting
from models.architectures import (
    CnnConfig,
    adapt_input_norm,
    build_cnn,
    classifier_view,
    count_macs,
)
from models.augment import AugmentConfig, augment
from models.averaging import weight_average
from models.datasets import (
    AudioCache,
    Skipped,
    Split,
    TaskChoice,
    WindowPlan,
    WindowSet,
    check_labels,
    load_clips,
    scan_dataset,
    split_by_file,
    window_set,
)
from models.masking import MaskConfig, mask_windows
from stream.features.spec import FeatureSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

MODEL_KERAS = "model.keras"
GOLDEN_WINDOWS = 32


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything a training run depends on besides the data and the FeatureSpec.

    Attributes
    ----------
    task: ``"auto"`` (``labels.csv`` present → multi), ``"single"`` or ``"multi"``.
    epochs: upper bound; early stopping usually ends sooner.
    batch_size, learning_rate: Adam on mini-batches of windows.
    patience: epochs without a better validation loss before stopping (best
        weights are restored).
    seed: fixes split, augmentation, initialization and shuffling.
    init_seed: seeds initialization, shuffling and dropout instead of ``seed`` (the
        split and the augmentation stay ``seed``'s), or ``None``. Why: runs that differ
        only here share their held-out files and training windows, so their spread is
        the seed noise of training alone and their held-out figures compare.
    val_fraction, test_fraction: share of each label's files held out.
    threads: TensorFlow intra- and inter-op threads.
    augment: waveform augmentation of training files.
    cnn: layer sizes.
    progress: progress bars on stderr.
    balanced_validation: weigh validation windows so every label counts as much as
        another in the validation loss early stopping watches (single-label only), as
        the training loss does with class weights. Why: when real speech and music
        clips outnumber the synthetic silence, tone and noise windows several times,
        an unweighted validation loss picks the epoch that suits speech and music and
        not the one that suits every label. Off by default: older recipes rebuild
        the same models.
    masks: SpecAugment masks drawn afresh for every training batch
        (:mod:`models.masking`); none by default.
    average_from: ship the mean of the trainable weights at the end of every epoch
        from this one (1-based) to the last (:mod:`models.averaging`), not the
        weights of the epoch with the lowest validation loss; or ``None``. Early
        stopping still ends a run after ``patience`` epochs without a better
        validation loss, but restores nothing: it is a safety net, not the selector,
        and ``epochs`` is the run's budget. Why: on scene/4's recipe the seed moved
        the hold-out by six points and the weak runs stopped at epoch 1–3. Off by
        default: older recipes rebuild the same models.
    ema_momentum: ship an exponential moving average of the trainable weights,
        updated after every step with this momentum (Keras' optimizer EMA,
        ``use_ema``; 0.999 weighs about the last thousand steps), not the weights of
        the epoch with the lowest validation loss; or ``None``. Early stopping
        restores nothing then, as with ``average_from``. Off by default.
    """

    task: TaskChoice = "auto"
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 6
    seed: int = 0
    init_seed: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    threads: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cnn: CnnConfig = field(default_factory=CnnConfig)
    progress: bool = True
    balanced_validation: bool = False
    masks: MaskConfig = field(default_factory=MaskConfig)
    average_from: int | None = None
    ema_momentum: float | None = None


@dataclass(slots=True)
class TrainedModel:
    """A trained two-output model and everything export and the report need.

    Attributes
    ----------
    model: Keras model with outputs ``probabilities`` and ``embedding``.
    spec, labels, task: what the model consumes and produces.
    thresholds: per-tag thresholds (multi) or ``None``.
    golden_x: held-out test windows for the exporter's parity gate.
    macs: multiply-adds per window (:func:`count_macs`).
    report: the held-out evaluation and run summary (``report.json``).
    history: per-epoch training/validation curves.
    test_set, test_probabilities: the held-out windows and what the model said,
        for breakdowns beyond the report (e.g. by telephone channel).
    """

    model: keras.Model
    spec: FeatureSpec
    labels: tuple[str, ...]
    task: Literal["single", "multi"]
    thresholds: tuple[float, ...] | None
    golden_x: np.ndarray
    macs: int
    report: dict[str, Any]
    history: dict[str, list[float]]
    test_set: WindowSet
    test_probabilities: np.ndarray

    def headline_metrics(self) -> dict[str, Any]:
        """The scalar held-out figures (``test_windows_accuracy``, ``test_files_mAP``, ...)."""
        out = {}
        for level in ("windows", "files"):
            for key, value in self.report["test"][level].items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"test_{level}_{key}"] = value
        return out

    def training_summary(self) -> dict[str, Any]:
        """Data and run summary for the manifest's ``training`` field."""
        return {
            "dataset": {k: v for k, v in self.report["dataset"].items() if k != "skipped"},
            "skipped_files": len(self.report["dataset"]["skipped"]),
            **self.report["training"],
        }

    def export(self, out_dir: Path, *, name: str, version: str, overwrite: bool) -> Path:
        """Export to ONNX under ``out_dir/name/version`` behind the parity gate, with the
        held-out figures in the manifest; returns the model directory. One call for
        ``tympan train`` and the zoo recipes, so both ship the same manifest fields."""
        from exporters.export import export_model

        return export_model(
            self.model,
            spec=self.spec,
            labels=self.labels,
            out_dir=out_dir,
            name=name,
            version=version,
            golden_x=self.golden_x,
            task=self.task,
            thresholds=self.thresholds,
            training_summary=self.training_summary(),
            metrics=self.headline_metrics(),
            macs=self.macs,
            overwrite=overwrite,
        )


def configure_tensorflow(*, seed: int, threads: int) -> None:
    """Quiet logs, fixed threads, seeded and deterministic ops; call before training.

    Thread counts can only be set before TensorFlow's runtime starts; in a process
    that already trained, the first setting stays (and is logged).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # native logs after start-up
    with _stderr_silenced():  # native start-up chatter (oneDNN, CUDA probing)
        import keras
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log.debug("TensorFlow already initialized; keeping its thread settings")
        tf.config.list_physical_devices()  # starts the runtime while stderr is quiet
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block.

    Why a descriptor and not ``sys.stderr``: TensorFlow's native code logs its
    start-up messages before absl logging is initialized, straight to fd 2, and
    ``TF_CPP_MIN_LOG_LEVEL`` does not reach them in TF 2.21. Python exceptions
    raised inside the block still surface normally after it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def train(
    data_dir: str | Path,
    *,
    spec: FeatureSpec | None = None,
    config: TrainConfig | None = None,
    name: str = "model",
    version: str = "1",
    extra: Split | None = None,
) -> TrainedModel:
    """Train and evaluate a CNN on ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        Folder with one sub-folder per label, or with ``labels.csv`` (multi-label).
    spec : FeatureSpec, optional
        The serving frontend; default ``FeatureSpec()`` (64 log-mels, 1 s windows).
    config : TrainConfig, optional
        Run settings.
    name, version : str
        Recorded in the report.
    extra : Split, optional
        More files already split (e.g. real recordings split by voice and track,
        :mod:`models.realtrain`): added to the training and validation splits, and to
        the test split; the held-out figures of ``data_dir`` alone stay comparable with
        a model trained without them when ``extra.test`` is empty.

    Raises
    ------
    DatasetError
        The folder cannot be trained on (empty, one class, too few usable files,
        bad ``labels.csv``).
    """
    spec = spec or FeatureSpec()
    config = config or TrainConfig()
    started = time.monotonic()
    data = prepare_data(data_dir, spec=spec, config=config, extra=extra)
    features_s = time.monotonic() - started
    configure_tensorflow(seed=_init_seed(config), threads=config.threads)
    labels, task, sets = data.labels, data.task, data.sets
    model = build_cnn(spec.input_shape, len(labels), task=task, config=config.cnn)
    history = _fit(model, sets["train"], sets["val"], task=task, config=config)
    thresholds = None
    if task == "multi":
        val_probs = _probabilities(model, sets["val"].x)
        thresholds = tuple(reporting.choose_thresholds(sets["val"].y, val_probs))
    test = sets["test"]
    test_probs = _probabilities(model, test.x)
    macs = count_macs(model)
    report: dict[str, Any] = {
        "name": name,
        "version": version,
        "task": task,
        "labels": list(labels),
        "thresholds": None if thresholds is None else list(thresholds),
        "spec": spec.to_dict(),
        "spec_hash": spec.spec_hash,
        "macs_per_window": macs,
        "params": int(model.count_params()),
        "dataset": _dataset_summary(data),
        "training": {
            **_training_summary(config, history, time.monotonic() - started),
            "features_seconds": round(features_s, 1),
        },
        "test": _evaluate(task, test, test_probs, labels, thresholds),
    }
    return TrainedModel(
        model=model,
        spec=spec,
        labels=labels,
        task=task,
        thresholds=thresholds,
        golden_x=test.x[:GOLDEN_WINDOWS],
        macs=macs,
        report=report,
        history=history,
        test_set=test,
        test_probabilities=test_probs,
    )


@dataclass(slots=True)
class PreparedData:
    """A dataset decoded, split by file and cut into windows per split."""

    root: Path
    task: Literal["single", "multi"]
    labels: tuple[str, ...]
    sets: dict[str, WindowSet]
    skipped: list[Skipped]


def prepare_data(
    data_dir: str | Path,
    *,
    spec: FeatureSpec,
    config: TrainConfig,
    extra: Split | None = None,
) -> PreparedData:
    """List, decode, split and featurize ``data_dir``; unusable files are skipped and logged.

    Only the training split is augmented; validation and test files are scored as
    they are. ``extra`` files join their own split after ``data_dir``'s files are
    split, so ``data_dir``'s split is the one a run without them makes.
    """
    index = scan_dataset(data_dir, task=config.task)
    cache = AudioCache(spec)
    usable, skipped = load_clips(index.clips, cache, progress=config.progress)
    for s in skipped:
        log.warning("skipping %s: %s (%s)", s.path, s.reason, s.detail)
    labels = check_labels(index.root, usable, skipped)
    split = split_by_file(
        usable,
        seed=config.seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
    )
    if extra is not None:
        split = _joined(split, extra, cache, skipped, progress=config.progress)
    plan = _augment_plan(config.augment, spec.sr, config.seed)
    sets = {
        which: window_set(
            clips,
            labels,
            cache,
            plan=plan if which == "train" else None,
            progress=config.progress,
            desc=f"features ({which})",
        )
        for which, clips in split.items()
    }
    return PreparedData(index.root, index.task, labels, sets, skipped)


def save_outputs(trained: TrainedModel, out_dir: Path, *, keras_file: bool = True) -> list[Path]:
    """Write ``model.keras`` (optional), the report files and the two PNGs into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(reporting.write_report(out_dir, trained.report))
    written.append(reporting.plot_confusion(out_dir / reporting.CONFUSION_PNG, trained.report))
    written.append(reporting.plot_history(out_dir / reporting.CURVES_PNG, trained.history))
    if keras_file:
        trained.model.save(out_dir / MODEL_KERAS)
        written.append(out_dir / MODEL_KERAS)
    return written


# -- pieces ----------------------------------------------------------------------------
def _joined(
    split: Split, extra: Split, cache: AudioCache, skipped: list[Skipped], *, progress: bool
) -> Split:
    """``split`` with ``extra``'s usable files appended to each split."""
    parts = []
    for (_, mine), (_, more) in zip(split.items(), extra.items(), strict=True):
        usable, left_out = load_clips(more, cache, progress=progress)
        skipped += left_out
        parts.append(mine + tuple(usable))
    return Split(*parts)


def _augment_plan(cfg: AugmentConfig, sr: int, seed: int) -> WindowPlan | None:
    if cfg.copies <= 0:
        return None

    def transform(y: np.ndarray, key: int, labels: tuple[str, ...]) -> np.ndarray:
        return augment(y, sr, np.random.default_rng([seed, key]), cfg, labels=labels)

    return WindowPlan(copies=cfg.copies, transform=transform)


def _fit(
    model: keras.Model,
    train_set: WindowSet,
    val_set: WindowSet,
    *,
    task: str,
    config: TrainConfig,
    observers: tuple[keras.callbacks.Callback, ...] = (),
) -> dict[str, list[float]]:
    """Fit ``model``; ``observers`` are callbacks run first (tests record weights with them)."""
    import keras

    adapt_input_norm(model, train_set.x)
    trainable = classifier_view(model)
    if task == "single":
        loss, metrics = "categorical_crossentropy", ["accuracy"]
    else:
        loss, metrics = "binary_crossentropy", [keras.metrics.AUC(multi_label=True, name="auc")]
    optimizer = keras.optimizers.Adam(config.learning_rate)
    if config.ema_momentum is not None:
        optimizer = keras.optimizers.Adam(
            config.learning_rate, use_ema=True, ema_momentum=config.ema_momentum
        )
    trainable.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    averaging = config.average_from is not None or config.ema_momentum is not None
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=not averaging
    )
    callbacks = [*observers, stop]
    if config.average_from is not None:
        callbacks = [*observers, weight_average(config.average_from), stop]
    validation: tuple[np.ndarray, ...] = (val_set.x, val_set.y)
    if task == "single" and config.balanced_validation:
        validation = (*validation, _sample_weights(val_set.y))
    weights = _class_weights(train_set.y) if task == "single" else None
    if config.masks.active:
        batches = _masked_batches(train_set, config)
        fitted = trainable.fit(
            batches,
            validation_data=validation,
            epochs=config.epochs,
            class_weight=weights,
            callbacks=callbacks,
            verbose=1 if config.progress else 0,
        )
    else:
        fitted = trainable.fit(
            train_set.x,
            train_set.y,
            validation_data=validation,
            epochs=config.epochs,
            batch_size=config.batch_size,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=True,
            verbose=1 if config.progress else 0,
        )
    return {k: [float(v) for v in values] for k, values in fitted.history.items()}


def _init_seed(config: TrainConfig) -> int:
    return config.seed if config.init_seed is None else config.init_seed


def _masked_batches(train_set: WindowSet, config: TrainConfig) -> Any:
    """Shuffled training batches, each masked as it is drawn (a Keras ``PyDataset``).

    The order and the masks come from one generator seeded by the run's
    initialization seed (``init_seed``, else ``seed``), so a run is reproducible;
    every epoch reshuffles and draws new masks.
    """
    import keras

    x, y, size = train_set.x, train_set.y, config.batch_size
    rng = np.random.default_rng([_init_seed(config), 0x5A])

    class MaskedBatches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.order = rng.permutation(len(x))

        def __len__(self) -> int:
            return -(-len(x) // size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            picked = np.sort(self.order[i * size : (i + 1) * size])
            return mask_windows(x[picked], rng, config.masks), y[picked]

        def on_epoch_end(self) -> None:
            self.order = rng.permutation(len(x))

    return MaskedBatches()


def _class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced weights ``n / (k * count)`` so a rare label counts as much as a common one."""
    counts = y.sum(axis=0)
    present = counts > 0
    weights = np.where(present, y.shape[0] / (present.sum() * np.maximum(counts, 1)), 0.0)
    return {i: float(w) for i, w in enumerate(weights)}


def _sample_weights(y: np.ndarray) -> np.ndarray:
    """Per-window weights ``[n]`` of one-hot ``y``: the balanced class weight of its label."""
    weights = _class_weights(y)
    return np.array([weights[i] for i in np.argmax(y, axis=1)], dtype=np.float32)


def _probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    from models.architectures import PROBABILITIES

    out = model.predict(x, batch_size=256, verbose=0)
    return np.asarray(out[PROBABILITIES], dtype=np.float32)


def _evaluate(
    task: str,
    test: WindowSet,
    probs: np.ndarray,
    labels: tuple[str, ...],
    thresholds: tuple[float, ...] | None,
) -> dict[str, Any]:
    file_probs = reporting.per_file(probs, test.file_index)
    file_truth = reporting.per_file(test.y, test.file_index)
    if task == "single":
        return {
            "windows": reporting.evaluate_single(test.y, probs, labels),
            "files": reporting.evaluate_single(file_truth, file_probs, labels),
        }
    assert thresholds is not None
    return {
        "windows": reporting.evaluate_multi(test.y, probs, labels, thresholds),
        "files": reporting.evaluate_multi(file_truth, file_probs, labels, thresholds),
    }


def _dataset_summary(data: PreparedData) -> dict[str, Any]:
    return {
        "root": str(data.root),
        "files": {k: len(v.clips) for k, v in data.sets.items()},
        "windows": {k: len(v) for k, v in data.sets.items()},
        "skipped": [
            {"path": str(s.path), "reason": s.reason, "detail": s.detail} for s in data.skipped
        ],
    }


def _training_summary(
    config: TrainConfig, history: dict[str, list[float]], seconds: float
) -> dict[str, Any]:
    val_loss = history.get("val_loss", [])
    return {
        "epochs_run": len(val_loss),
        "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss else 0,
        "max_epochs": config.epochs,
        "patience": config.patience,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "init_seed": _init_seed(config),
        "augment": dataclasses.asdict(config.augment),
        "cnn": dataclasses.asdict(config.cnn),
        "balanced_validation": config.balanced_validation,
        "masks": dataclasses.asdict(config.masks),
        **({} if config.average_from is None else {"average_from": config.average_from}),
        **({} if config.ema_momentum is None else {"ema_momentum": config.ema_momentum}),
        "seconds": round(seconds, 1),
    }


__all__ = [
    "MODEL_KERAS",
    "TrainConfig",
    "TrainedModel",
    "configure_tensorflow",
    "save_outputs",
    "train",
]
