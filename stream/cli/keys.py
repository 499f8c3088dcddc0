"""``tympan keys generate|id``: Ed25519 keys that sign model announcements and enrollments.

``tympan keys generate --out DIR`` writes ``DIR/tympan-signing.key`` (private, mode
0600: keep it where ``tympan models publish`` and ``tympan speakers ... --publish`` run,
and give it to them with ``--signing-key`` or ``$TYMPAN_SIGNING_KEY``) and
``DIR/tympan-signing.pub`` (public: every worker trusts it through ``--trusted-key`` or
``$TYMPAN_TRUSTED_KEYS``). ``tympan keys id FILE`` prints a key's id, the value of the
``tympan-key-id`` header of the records it signs. See docs/security.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream.cli.help import examples
from stream.errors import TympanError


def register(subparsers: Any) -> None:
    """Add ``tympan keys`` to the ``tympan`` command line.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``tympan`` parser's subcommands.
    """
    parser = subparsers.add_parser(
        "keys",
        help="make and inspect the keys that sign announcements and enrollments",
        description=__doc__,
        **examples(
            "tympan keys generate --out keys/          # keys/tympan-signing.key and .pub",
            "tympan keys id keys/tympan-signing.pub    # the id its records carry",
        ),
    )
    sub = parser.add_subparsers(dest="keys_command", required=True)
    gen = sub.add_parser(
        "generate",
        help="write a new Ed25519 key pair",
        **examples("tympan keys generate --out keys/ --name prod-signing"),
    )
    gen.add_argument("--out", type=Path, required=True, help="directory for the two files")
    gen.add_argument("--name", default="tympan-signing", help="file stem (tympan-signing)")
    gen.set_defaults(func=_generate)
    ident = sub.add_parser(
        "id",
        help="print the key id of a private or public key file",
        **examples("tympan keys id keys/tympan-signing.pub"),
    )
    ident.add_argument("file", type=Path, help="a private (.key) or public (.pub) key file")
    ident.set_defaults(func=_id)


def _generate(args: argparse.Namespace) -> int:
    from stream.control.signing import Signer, generate

    try:
        private, public = generate(args.out, args.name)
        ident = Signer.load(private).key_id
    except TympanError as exc:
        print(f"tympan keys: {exc}", file=sys.stderr)
        return 2
    print(f"private key: {private} (mode 0600: give it to the publishers only)")
    print(f"public key:  {public} (give it to every worker: --trusted-key / TYMPAN_TRUSTED_KEYS)")
    print(f"key id:      {ident}")
    return 0


def _id(args: argparse.Namespace) -> int:
    from stream.control.signing import Signer, Verifier, key_id

    try:
        text = args.file.read_bytes()
    except OSError as exc:
        print(f"tympan keys: {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        if b"PRIVATE KEY" in text:
            print(key_id(Signer.load(args.file).private.public_key()))
        else:
            print(next(iter(Verifier.load([args.file]).keys)))
    except TympanError as exc:
        print(f"tympan keys: {exc}", file=sys.stderr)
        return 2
    return 0
