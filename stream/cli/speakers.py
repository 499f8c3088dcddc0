"""``tympan speakers enroll|list|remove|identify|evaluate|sync``: open-set speaker ID.

The registry lives in a directory (``--speaker-registry``, else
``$TYMPAN_SPEAKER_REGISTRY``, else ``tympan/speakers`` in your user data folder, e.g.
``~/.local/share/tympan/speakers``) bound to the embedding model (``--speaker-model``,
else the latest ``speaker-embed`` in ``$TYMPAN_MODEL_REPO`` or the checkout's
``models/zoo``). ``--publish`` (and ``sync``) also write enrollments to the
compacted registry topic that every worker follows (``tympan.speaker-registry.v1`` under
``$TYMPAN_TOPIC_PREFIX``, else tympan), so an enrollment reaches live calls without a
restart; missing topics of that prefix are created first. See ``docs/speakers.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from stream.cli.exit_codes import ExitCode
from stream.cli.help import examples, renamed
from stream.errors import BrokerError, TympanError
from stream.kafka.config import KafkaClientConfig

EXAMPLES = (
    "tympan speakers enroll anna anna-1.wav anna-2.wav   # 10-20 s of speech",
    "tympan speakers identify call.wav",
    "tympan speakers --speaker-registry team/ enroll bob bob.wav --publish",
)
REGISTRY_ENV = "TYMPAN_SPEAKER_REGISTRY"
MODEL_REPO_ENV = "TYMPAN_MODEL_REPO"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "speakers",
        help="enroll, list, remove and identify speakers (open set)",
        description=__doc__,
        **examples(*EXAMPLES),
    )
    _shared_options(parser, default=None)
    sub = parser.add_subparsers(dest="speakers_command", metavar="SUBCOMMAND")

    enroll = sub.add_parser(
        "enroll",
        help="enroll NAME from audio files (replaces NAME)",
        **examples("tympan speakers enroll anna anna-1.wav anna-2.wav --publish"),
    )
    enroll.add_argument("name", help="the speaker's name, as events will report it")
    enroll.add_argument("files", nargs="+", type=Path, help="audio files of that speaker")
    enroll.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="speech used, pauses left out (default 20; at most 900 s of audio is read)",
    )
    enroll.add_argument(
        "--scene-model",
        default="auto",
        help="label model that may veto clips it mostly hears as music ('auto': "
        "the latest 'scene' model if there is one; 'none': the voice activity model only)",
    )
    _publish_flags(enroll)
    enroll.set_defaults(func=_enroll)

    lst = sub.add_parser(
        "list",
        help="list enrolled speakers and the threshold",
        **examples("tympan speakers list --json"),
    )
    lst.add_argument("--json", action="store_true", help="one JSON document")
    lst.set_defaults(func=_list)

    remove = sub.add_parser(
        "remove", help="remove NAME", **examples("tympan speakers remove anna --publish")
    )
    remove.add_argument("name", help="the enrolled speaker to remove")
    _publish_flags(remove)
    remove.set_defaults(func=_remove)

    ident = sub.add_parser(
        "identify",
        help="identify the speaker of each file",
        **examples("tympan speakers identify call-1.wav call-2.wav --json"),
    )
    ident.add_argument("files", nargs="+", type=Path, help="audio files, one verdict each")
    ident.add_argument("--json", action="store_true", help="one JSON record per file")
    ident.add_argument(
        "--method",
        choices=("centroid", "knn"),
        default="centroid",
        help="score against each speaker's mean embedding or its nearest windows "
        "(default: centroid)",
    )
    ident.set_defaults(func=_identify)

    ev = sub.add_parser(
        "evaluate",
        help="EER, accuracy, unknown rejection on DATA_DIR",
        **examples("tympan speakers evaluate data/voices/ --out reports/"),
    )
    ev.add_argument(
        "data_dir", type=Path, help="DATA_DIR/enroll/<speaker>/, DATA_DIR/test/<speaker>/"
    )
    ev.add_argument("--out", type=Path, default=None, help="report.json + det.png here")
    ev.set_defaults(func=_evaluate)

    sync = sub.add_parser(
        "sync",
        help="publish the whole local registry to the topic",
        **examples("tympan speakers sync --signing-key keys/prod.key"),
    )
    sync.add_argument("--broker", default=None, help="bootstrap servers (default $TYMPAN_BROKER)")
    sync.add_argument("--topic", default=None, help="registry topic (default: the standard one)")
    sync.add_argument("--signing-key", dest="signing_key", help="private key that signs")
    sync.set_defaults(func=_sync)
    for command in (enroll, lst, remove, ident, ev, sync):  # before or after the subcommand
        _shared_options(command, default=argparse.SUPPRESS)
    parser.set_defaults(func=lambda _a: _usage(parser))


def _shared_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """``--speaker-registry`` and ``--speaker-model`` (and their old spellings), on
    ``tympan speakers`` and on each subcommand, so they work before or after it; a
    subcommand's default is ``SUPPRESS`` so that it never hides the value given before."""
    parser.add_argument(
        "--speaker-registry",
        dest="registry",
        metavar="DIR",
        type=Path,
        default=default,
        help="speaker registry directory (default: $TYMPAN_SPEAKER_REGISTRY, else your "
        "user data folder's tympan/speakers)",
    )
    renamed(parser, "--registry", new="--speaker-registry")
    parser.add_argument(
        "--speaker-model",
        dest="model",
        metavar="MODEL",
        default=default,
        help="speaker model: directory or name[/version] (default: the latest speaker-embed)",
    )
    renamed(parser, "--model", new="--speaker-model")


def _publish_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", action="store_true", help="also write to the registry topic")
    parser.add_argument(
        "--signing-key",
        dest="signing_key",
        help="Ed25519 private key that signs the records (TYMPAN_SIGNING_KEY)",
    )
    parser.add_argument("--broker", default=None, help="bootstrap servers (default $TYMPAN_BROKER)")
    parser.add_argument("--topic", default=None, help="registry topic (default: the standard one)")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- resolution (the one place the speakers CLI reads the environment) -------------------


def registry_dir(args: argparse.Namespace) -> Path:
    if args.registry is not None:
        return Path(args.registry)
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("tympan")) / "speakers"


def _embedder(args: argparse.Namespace) -> Any:
    from stream.inference.repository import resolve_model_dir
    from stream.roles import Role
    from stream.speakers.embedder import SpeakerEmbedder

    repo = os.environ.get(MODEL_REPO_ENV)
    model_dir = resolve_model_dir(args.model, repo=Path(repo) if repo else None, role=Role.SPEAKER)
    return SpeakerEmbedder(model_dir)


def _scene_veto(args: argparse.Namespace) -> Any:
    """The label model's non-voice veto, or ``None`` (``none``, or ``auto`` without one)."""
    from stream.errors import ModelError
    from stream.inference.repository import resolve_model_dir
    from stream.roles import Role
    from stream.speakers.embedder import SceneVeto

    if args.scene_model == "none":
        return None
    repo_env = os.environ.get(MODEL_REPO_ENV)
    repo = Path(repo_env) if repo_env else None
    ref = None if args.scene_model == "auto" else args.scene_model
    try:
        return SceneVeto(resolve_model_dir(ref, repo=repo, role=Role.LABEL))
    except ModelError as exc:
        if args.scene_model != "auto":
            raise
        logging.getLogger(__name__).info("no label-model veto for enrollment: %s", exc)
        return None


def _client(args: argparse.Namespace) -> KafkaClientConfig:
    return KafkaClientConfig.from_environ(
        os.environ, bootstrap_servers=args.broker, default_client_id="tympan-speakers"
    )


def _topics() -> Any:
    from stream.kafka.topics import Topics
    from stream.settings import ENV_TOPIC_PREFIX

    return Topics().with_prefix(os.environ.get(ENV_TOPIC_PREFIX) or Topics().prefix)


def _topic(args: argparse.Namespace) -> str:
    return str(args.topic or _topics().speaker_registry)


def _load(args: argparse.Namespace, embedder: Any | None = None) -> Any:
    from stream.speakers.evaluation import binding
    from stream.speakers.registry import load_registry

    if embedder is None:
        return load_registry(registry_dir(args))
    return load_registry(registry_dir(args), model=binding(embedder), config=embedder.calibration)


def _run(func: Any, args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except TympanError as exc:
        print(f"tympan speakers: {exc}", file=sys.stderr)
        # a refused enrollment or registry is this command's input (1); the broker is 3
        return ExitCode.BROKER if isinstance(exc, BrokerError) else ExitCode.INPUT


# -- commands -----------------------------------------------------------------------------


def _enroll(args: argparse.Namespace) -> int:
    return _run(_do_enroll, args)


def _do_enroll(args: argparse.Namespace) -> int:
    from stream.speakers.evaluation import enrollment_embeddings
    from stream.speakers.registry import check_name, save_registry

    check_name(args.name)
    embedder = _embedder(args)
    registry = _load(args, embedder)
    emb = enrollment_embeddings(
        embedder, args.files, max_seconds=args.max_seconds, scene_veto=_scene_veto(args)
    )
    registry = registry.with_speaker(args.name, emb, model=registry.model)
    path = save_registry(registry, registry_dir(args))
    print(
        f"enrolled {args.name!r} from {emb.shape[0]} speech windows into {path} "
        f"({len(registry)} speakers, threshold {registry.threshold:.3f} "
        f"[{registry.calibration.method}])"
    )
    if args.publish:
        _publish(args, registry, names=[args.name])
    return 0


def _publish(
    args: argparse.Namespace, registry: Any, *, names: Any = None, removed: Any = ()
) -> None:
    from stream.control.signing import signer_from
    from stream.kafka.admin import require_topics
    from stream.speakers.topic import publish

    asyncio.run(require_topics(_client(args), _topics(), [_topic(args)], create=True))
    sent = asyncio.run(
        publish(
            _client(args),
            registry,
            names=names,
            removed=removed,
            topic=_topic(args),
            signer=signer_from(getattr(args, "signing_key", None)),
        )
    )
    print(f"published {sent} record(s) to {_topic(args)}")


def _list(args: argparse.Namespace) -> int:
    return _run(_do_list, args)


def _do_list(args: argparse.Namespace) -> int:
    path = registry_dir(args)
    from stream.speakers.registry import INDEX_FILE

    if not (path / INDEX_FILE).exists():
        print(f"no speakers enrolled ({path} has no registry)")
        return 0
    registry = _load(args)
    rows = [
        {
            "name": name,
            "windows": int(registry.speakers[name].embeddings.shape[0]),
            "updated_at": registry.speakers[name].updated_at,
        }
        for name in registry
    ]
    if args.json:
        doc = {
            "registry": str(path),
            "model": registry.model.to_dict(),
            "calibration": registry.calibration.to_dict(),
            "speakers": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{path}: model {registry.model.describe()}, threshold {registry.threshold:.3f}")
    width = max([32, *(len(row["name"]) for row in rows)])  # long names stay aligned
    for row in rows:
        print(f"  {row['name']:<{width}} {row['windows']:>4} windows  {row['updated_at']}")
    if not rows:
        print("  (no speakers)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    return _run(_do_remove, args)


def _do_remove(args: argparse.Namespace) -> int:
    from stream.speakers.registry import save_registry

    registry = _load(args)
    registry = registry.without(args.name)
    save_registry(registry, registry_dir(args))
    print(f"removed {args.name!r} ({len(registry)} speakers left)")
    if args.publish:
        _publish(args, registry, names=[], removed=[args.name])
    return 0


def _identify(args: argparse.Namespace) -> int:
    return _run(_do_identify, args)


def _do_identify(args: argparse.Namespace) -> int:
    from stream.speakers.evaluation import identify_files
    from stream.speakers.scoring import ScoringConfig

    embedder = _embedder(args)
    registry = _load(args, embedder)
    if not len(registry):
        from stream.errors import RegistryError

        raise RegistryError(
            f"no speakers enrolled in {registry_dir(args)}: enroll one first with "
            "`tympan speakers enroll NAME FILE...` (same --speaker-registry), then identify"
        )
    results = identify_files(embedder, registry, args.files, config=ScoringConfig(args.method))
    for result in results:
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            v = result.verdict
            print(
                f"{result.path}: {v.speaker} (score {v.score:.3f}, nearest {v.nearest}, "
                f"margin {v.margin:.3f}, threshold {v.threshold:.3f})"
            )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    return _run(_do_evaluate, args)


def _do_evaluate(args: argparse.Namespace) -> int:
    from stream.speakers.evaluation import evaluate_dir, plot_det

    embedder = _embedder(args)
    reports = evaluate_dir(embedder, args.data_dir)
    out = args.out or args.data_dir
    doc = {
        "model": f"{embedder.manifest.name}/{embedder.manifest.version}",
        "data_dir": str(args.data_dir),
        "reports": [r.to_dict() for r in reports],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "speaker-eval.json").write_text(json.dumps(doc, indent=2) + "\n")
    try:
        png: Path | str = plot_det(reports, out / "speaker-det.png")
    except ImportError as exc:  # matplotlib comes with the dev/train extras only
        png = f"no DET plot ({exc.name} is not installed)"
    for rep in reports:
        print(
            f"{rep.method:>8}: EER {100 * (rep.eer or 0):.1f}%  identification accuracy "
            f"{rep.accuracy:.3f}  unknown rejection {rep.unknown_rejection:.3f}  "
            f"threshold {rep.threshold:.3f} ({rep.calibration_method})"
        )
    print(f"wrote {out / 'speaker-eval.json'} and {png}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    return _run(_do_sync, args)


def _do_sync(args: argparse.Namespace) -> int:
    registry = _load(args)
    _publish(args, registry)
    return 0
