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


# -- malformed signature headers: always a refusal, never another exception -----------------


def _malformed(signer: Signer) -> dict[str, list[tuple[str, object]]]:
    good_sig, good_id = (v for _, v in signer.headers(b"k", b"v"))
    return {
        "null key id": [(SIGNATURE_HEADER, good_sig), (KEY_ID_HEADER, None)],
        "null signature": [(SIGNATURE_HEADER, None), (KEY_ID_HEADER, good_id)],
        "str key id": [(SIGNATURE_HEADER, good_sig), (KEY_ID_HEADER, signer.key_id)],
        "non-UTF-8 key id": [(SIGNATURE_HEADER, good_sig), (KEY_ID_HEADER, b"\xff" * 16)],
        "short key id": [(SIGNATURE_HEADER, good_sig), (KEY_ID_HEADER, good_id[:-1])],
        "upper-case key id": [(SIGNATURE_HEADER, good_sig), (KEY_ID_HEADER, good_id.upper())],
        "short signature": [(SIGNATURE_HEADER, good_sig[:63]), (KEY_ID_HEADER, good_id)],
        "long signature": [(SIGNATURE_HEADER, good_sig + b"\0"), (KEY_ID_HEADER, good_id)],
        "two signatures": [
            (SIGNATURE_HEADER, good_sig),
            (SIGNATURE_HEADER, good_sig),
            (KEY_ID_HEADER, good_id),
        ],
        "two key ids": [
            (SIGNATURE_HEADER, good_sig),
            (KEY_ID_HEADER, good_id),
            (KEY_ID_HEADER, good_id),
        ],
        "no key id": [(SIGNATURE_HEADER, good_sig)],
        "headers not pairs": [(SIGNATURE_HEADER,)],  # type: ignore[list-item]
    }


@pytest.mark.parametrize(
    "case",
    [
        "null key id",
        "null signature",
        "str key id",
        "non-UTF-8 key id",
        "short key id",
        "upper-case key id",
        "short signature",
        "long signature",
        "two signatures",
        "two key ids",
        "no key id",
        "headers not pairs",
    ],
)
def test_malformed_signature_headers_are_refused_not_raised(
    keys: tuple[Signer, Verifier, Path], case: str
) -> None:
    signer, verifier, _ = keys
    with pytest.raises(SignatureError) as info:
        verifier.check(b"k", b"v", _malformed(signer)[case])  # type: ignore[arg-type]
    assert info.value.reason == "bad_signature"


def test_header_names_given_as_bytes_are_read_and_foreign_ones_ignored(
    keys: tuple[Signer, Verifier, Path],
) -> None:
    signer, verifier, _ = keys
    headers = [(name.encode(), value) for name, value in signer.headers(b"k", b"v")]
    noise = [(b"\xff\xfe", b"x"), ("other", None)]
    verifier.check(b"k", b"v", noise + headers)  # type: ignore[operator]


@given(
    headers=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from([SIGNATURE_HEADER, KEY_ID_HEADER]),
                st.sampled_from([SIGNATURE_HEADER.encode(), KEY_ID_HEADER.encode()]),
                st.binary(max_size=20),
                st.text(max_size=20),
            ),
            st.one_of(st.none(), st.binary(max_size=80), st.text(max_size=20), st.integers()),
        ),
        max_size=6,
    )
)
def test_any_headers_verify_or_raise_only_a_signature_error(
    keys: tuple[Signer, Verifier, Path], headers: list[tuple[object, object]]
) -> None:
    _, verifier, _ = keys
    with pytest.raises(SignatureError):  # nothing here was signed by the trusted key
        verifier.check(b"k", b"v", headers)  # type: ignore[arg-type]


def test_a_trusted_key_folder_without_keys_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("keys go here")
    with pytest.raises(ConfigError, match=r"holds no \*\.pub file"):
        Verifier.load([tmp_path])
    assert not Verifier.load([]).enabled  # no --trusted-key at all: development mode
