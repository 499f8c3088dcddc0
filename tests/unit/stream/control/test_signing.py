"""Ed25519 signatures on control and registry records (stream.control.signing)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.control.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    Signer,
    Verifier,
    generate,
    signed_bytes,
)
from stream.errors import ConfigError


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Verifier, Path]:
    directory = tmp_path_factory.mktemp("keys")
    private, public = generate(directory)
    return Signer.load(private), Verifier.load([public]), directory


def test_a_signed_record_checks_out(keys: tuple[Signer, Verifier, Path]) -> None:
    signer, verifier, _ = keys
    headers = signer.headers(b"model/scene", b'{"version": "2"}')
    verifier.check(b"model/scene", b'{"version": "2"}', headers)


@given(key=st.binary(max_size=40), value=st.one_of(st.none(), st.binary(max_size=200)))
def test_signed_bytes_frame_key_and_value_apart(key: bytes, value: bytes | None) -> None:
    """No other (key, value) pair signs the same bytes: moving bytes across fails."""
    if value:
        assert signed_bytes(key + value[:1], value[1:]) != signed_bytes(key, value)
    assert signed_bytes(key, None) != signed_bytes(key, b"")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"model/scene", b'{"version": "3"}'),  # value altered
        (b"model/speaker", b'{"version": "2"}'),  # moved to another key
        (b"model/scene", None),  # turned into a tombstone
    ],
)
def test_an_altered_record_is_refused(
    keys: tuple[Signer, Verifier, Path], key: bytes, value: bytes | None
) -> None:
    signer, verifier, _ = keys
    headers = signer.headers(b"model/scene", b'{"version": "2"}')
    with pytest.raises(SignatureError, match="does not match") as info:
        verifier.check(key, value, headers)
    assert info.value.reason == "bad_signature"


def test_unsigned_and_foreign_records_are_refused(
    keys: tuple[Signer, Verifier, Path], tmp_path: Path
) -> None:
    _, verifier, _ = keys
    with pytest.raises(SignatureError, match="not signed"):
        verifier.check(b"k", b"v", [])
    stranger = Signer.load(generate(tmp_path)[0])
    with pytest.raises(SignatureError, match="not trusted"):
        verifier.check(b"k", b"v", stranger.headers(b"k", b"v"))
    forged = [(SIGNATURE_HEADER, b"\0" * 64), (KEY_ID_HEADER, stranger.key_id.encode())]
    with pytest.raises(SignatureError):
        verifier.check(b"k", b"v", forged)


def test_without_trusted_keys_nothing_is_checked() -> None:
    verifier = Verifier()
    assert not verifier.enabled
    verifier.check(b"k", b"v", None)


def test_a_directory_of_keys_is_trusted_whole(
    keys: tuple[Signer, Verifier, Path], tmp_path: Path
) -> None:
    signer, _, directory = keys
    new = Signer.load(generate(directory, "rotated")[0])
    both = Verifier.load([directory])
    assert set(both.keys) == {signer.key_id, new.key_id}
    both.check(b"k", b"v", new.headers(b"k", b"v"))


def test_generate_writes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path,
) -> None:
    private, public = generate(tmp_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate(tmp_path)
    with pytest.raises(ConfigError, match=r"not an Ed25519 private key|cannot read"):
        Signer.load(public)
    with pytest.raises(ConfigError, match="cannot read"):
        Verifier.load([tmp_path / "missing.pub"])


def test_the_registry_follower_rejects_unsigned_enrollments(
    keys: tuple[Signer, Verifier, Path],
) -> None:
    import numpy as np

    from stream.kafka.config import KafkaClientConfig
    from stream.speakers.registry import ModelBinding, SpeakerRegistry
    from stream.speakers.topic import RegistryFollower, encode_enrollment

    signer, verifier, _ = keys
    binding = ModelBinding("embed", "1", 4)
    rng = np.random.default_rng(0)
    source = SpeakerRegistry.empty(binding).with_speaker(
        "alice", rng.standard_normal((3, 4)), model=binding, updated_at="2026-11-29T00:00:00Z"
    )
    key, value = encode_enrollment(source, "alice")
    follower = RegistryFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"), binding, verifier=verifier
    )
    rejected = follower.apply(key, value)
    assert rejected.outcome == "rejected" and rejected.reason.startswith("bad_signature")
    assert "alice" not in follower.registry and follower.rejected == 1
    enrolled = follower.apply(key, value, headers=signer.headers(key, value))
    assert enrolled.outcome == "enrolled" and "alice" in follower.registry
