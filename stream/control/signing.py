"""Ed25519 signatures on the records that steer workers: model announcements and enrollments.

ACLs decide who may *write* the control and speaker-registry topics; signatures decide
whether a worker *believes* what it reads there. A worker configured with trusted
public keys refuses every control or registry record that is unsigned, signed by
another key, or altered after signing (``refused: bad_signature``), so a stolen
producer credential, a misconfigured ACL or a broker operator cannot switch the
model or enroll a voice. Without trusted keys nothing is checked (development).

What is signed is the record's key and value, framed so that neither can be moved
into the other and a tombstone (no value) differs from an empty value::

    b"tympan-record-v1\\0" + u64be(len(key)) + key + (b"\\0" if value is None
                                                     else b"\\1" + u64be(len(value)) + value)

The signature travels in the ``tympan-signature`` header (64 raw bytes) with the
signer's key id in ``tympan-key-id`` (the first 16 hex digits of the sha256 of the raw
public key), so a worker can trust several keys during a rotation. Each must appear
once, with exactly that shape: a null, non-bytes, mis-sized or repeated header is a
refusal (``SignatureError``), never an exception of another kind. Keys are PEM files:
PKCS#8 for the private key (written mode 0600), SubjectPublicKeyInfo for the public one.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stream.errors import ConfigError, ContractError

SIGNATURE_HEADER = "tympan-signature"
KEY_ID_HEADER = "tympan-key-id"
BAD_SIGNATURE = "bad_signature"
SIGNATURE_LENGTH = 64  # Ed25519
KEY_ID_LENGTH = 16  # hex digits of the key's sha256 (key_id)
_HEX = frozenset(b"0123456789abcdef")
_DOMAIN = b"tympan-record-v1\0"

Headers = Sequence[tuple[str, bytes | None]]


class SignatureError(ContractError):
    """A control or registry record whose signature does not check out.

    ``reason`` is always ``bad_signature``: the status a worker publishes names it.
    """

    reason = BAD_SIGNATURE


def signed_bytes(key: bytes | None, value: bytes | None) -> bytes:
    """The exact bytes a signature covers (see the module docstring)."""
    key = key or b""
    head = _DOMAIN + struct.pack(">Q", len(key)) + key
    if value is None:
        return head + b"\0"
    return head + b"\1" + struct.pack(">Q", len(value)) + value


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: 16 hex digits of the sha256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """Signs records with one private key (``tympan models publish``, ``speakers --publish``)."""

    private: Ed25519PrivateKey
    key_id: str

    @classmethod
    def load(cls, path: Path | str) -> Signer:
        """Read a PEM private key written by ``tympan keys generate``.

        Raises
        ------
        ConfigError
            When the file is missing, unreadable or not an Ed25519 private key.
        """
        path = Path(path)
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"signing key {path}: cannot read it: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"signing key {path}: not an Ed25519 private key")
        return cls(private, key_id(private.public_key()))

    def headers(self, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        """The two headers that carry this record's signature."""
        signature = self.private.sign(signed_bytes(key, value))
        return [(SIGNATURE_HEADER, signature), (KEY_ID_HEADER, self.key_id.encode())]


@dataclass(frozen=True)
class Verifier:
    """The public keys a worker trusts; empty means "check nothing" (development)."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def load(cls, paths: Iterable[Path | str]) -> Verifier:
        """Read PEM public keys (files, or directories of ``*.pub`` files).

        No paths at all is development mode (nothing is checked); a path that was given
        but yields no key is an error, never a silent switch to "check nothing".

        Raises
        ------
        ConfigError
            When a file is missing, unreadable or not an Ed25519 public key, or a
            directory holds no ``*.pub`` file.
        """
        keys: dict[str, Ed25519PublicKey] = {}
        for path in _expand(paths):
            try:
                public = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(f"trusted key {path}: cannot read it: {exc}") from exc
            if not isinstance(public, Ed25519PublicKey):
                raise ConfigError(f"trusted key {path}: not an Ed25519 public key")
            keys[key_id(public)] = public
        return cls(keys)

    def check(self, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
        """Refuse the record unless a trusted key signed exactly this key and value.

        Cheap (one header scan, one Ed25519 verification): callers check before they
        decode the value, so an unsigned record costs no parsing.

        Raises
        ------
        SignatureError
            Unsigned, signed by an unknown key, not matching its signature, or
            signature headers that are malformed (:func:`signature_headers`); never
            anything else, whatever ``headers`` holds.
        """
        if not self.keys:
            return
        signature, signer = signature_headers(headers)
        public = self.keys.get(signer)
        if public is None:
            raise SignatureError(f"the record is signed by key {signer!r}, which is not trusted")
        try:
            public.verify(signature, signed_bytes(key, value))
        except InvalidSignature as exc:
            raise SignatureError(
                f"the signature by key {signer!r} does not match the record (altered?)"
            ) from exc


def signature_headers(headers: Headers | None) -> tuple[bytes, str]:
    """The record's signature (64 bytes) and key id (16 hex digits), checked for shape.

    Headers come from the network: a value may be null, not bytes, not ASCII, of any
    length, and a name may repeat. Each of ``tympan-signature`` and ``tympan-key-id``
    must appear exactly once with a well-formed value; anything else is refused, never
    guessed (two signatures would let a record pick the one that helps it). Header
    names that are bytes are read as UTF-8; names that are not ours are ignored.

    Raises
    ------
    SignatureError
        Naming the header and what is wrong with it.
    """
    try:
        found = _ours(headers)
    except Exception as exc:  # headers shaped like nothing a client writes
        raise SignatureError(
            f"the record's headers cannot be read: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    signatures, key_ids = found[SIGNATURE_HEADER], found[KEY_ID_HEADER]
    if not signatures:
        raise SignatureError("the record is not signed and this worker trusts signed ones only")
    if len(signatures) > 1 or len(key_ids) > 1:
        raise SignatureError(
            f"the record carries {len(signatures)} {SIGNATURE_HEADER!r} and {len(key_ids)} "
            f"{KEY_ID_HEADER!r} headers; exactly one of each is accepted"
        )
    if not key_ids:
        raise SignatureError(f"the record is signed but has no {KEY_ID_HEADER!r} header")
    return _signature_value(signatures[0]), _key_id_value(key_ids[0])


def _ours(headers: Headers | None) -> dict[str, list[object]]:
    """The values of the signature headers, by name, in order (any other is ignored)."""
    found: dict[str, list[object]] = {SIGNATURE_HEADER: [], KEY_ID_HEADER: []}
    for name, data in headers or ():
        if isinstance(name, bytes | bytearray):
            try:
                name = bytes(name).decode("utf-8")
            except UnicodeDecodeError:
                continue  # not a name of ours
        if isinstance(name, str) and name in found:
            found[name].append(data)
    return found


def _signature_value(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise SignatureError(
            f"header {SIGNATURE_HEADER!r} is {_shown(data)}, not {SIGNATURE_LENGTH} bytes"
        )
    if len(data) != SIGNATURE_LENGTH:
        raise SignatureError(
            f"header {SIGNATURE_HEADER!r} holds {len(data)} bytes, not {SIGNATURE_LENGTH} "
            "(an Ed25519 signature)"
        )
    return bytes(data)


def _key_id_value(data: object) -> str:
    if not isinstance(data, bytes | bytearray):
        raise SignatureError(f"header {KEY_ID_HEADER!r} is {_shown(data)}, not a key id")
    if len(data) != KEY_ID_LENGTH or not _HEX.issuperset(data):
        raise SignatureError(
            f"header {KEY_ID_HEADER!r} is {bytes(data[:40])!r} ({len(data)} bytes), not "
            f"{KEY_ID_LENGTH} lowercase hex digits"
        )
    return bytes(data).decode("ascii")


def _shown(data: object) -> str:
    return "null" if data is None else f"a {type(data).__name__}"


def signer_from(path: Path | str | None) -> Signer | None:
    """The publisher's signer: ``path`` (a flag), else ``$TYMPAN_SIGNING_KEY``, else none.

    The one place publishers read the key's location from the environment.
    """
    from stream.settings import ENV_SIGNING_KEY

    chosen = path or os.environ.get(ENV_SIGNING_KEY)
    return Signer.load(chosen) if chosen else None


def generate(directory: Path | str, name: str = "tympan-signing") -> tuple[Path, Path]:
    """Write a new key pair: ``<name>.key`` (private, mode 0600) and ``<name>.pub``.

    Refuses to overwrite an existing private key (a rotation keeps the old one until
    every worker trusts the new one).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    if private_path.exists():
        raise ConfigError(f"{private_path} exists: refusing to overwrite a signing key")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def _expand(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.is_dir():
            out.append(path)
            continue
        found = sorted(p for p in path.glob("*.pub") if not p.is_dir())
        if not found:
            raise ConfigError(
                f"trusted key folder {path} holds no *.pub file: refusing to start with "
                "signature checks off (put the publishers' public keys there, or drop "
                "--trusted-key / TYMPAN_TRUSTED_KEYS to run unchecked)"
            )
        out.extend(found)
    return out
