"""load_audio: formats, downmix, resampling, and errors that name the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from stream.audio import StreamResampler, load_audio
from stream.audio.files import audio_files
from stream.errors import AudioFileError, InputError


def tone(sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "subtype"), [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")]
)
def test_formats(tmp_path: Path, suffix: str, subtype: str) -> None:
    path = tmp_path / f"a{suffix}"
    sf.write(path, tone(16000), 16000, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == 16000 and y.dtype == np.float32 and y.ndim == 1
    if subtype == "VORBIS":  # lossy: length and values only close
        assert abs(len(y) - 8000) < 100
    else:
        np.testing.assert_allclose(y, tone(16000), atol=1 / 32768)


def test_pcm16_is_exact(tmp_path: Path) -> None:
    pcm = np.random.default_rng(0).integers(-32768, 32768, 1000).astype(np.int16)
    sf.write(tmp_path / "x.wav", pcm, 8000, subtype="PCM_16")
    y, _ = load_audio(tmp_path / "x.wav")
    assert np.array_equal(y * 32768, pcm.astype(np.float32))


def test_downmix_and_channels_first(tmp_path: Path) -> None:
    stereo = np.stack([tone(8000), np.zeros(4000, np.float32)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    mono, _ = load_audio(tmp_path / "s.wav")
    both, _ = load_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, 4000)
    np.testing.assert_allclose(mono, tone(8000) / 2, atol=1e-7)


def test_resampling_matches_soxr(tmp_path: Path) -> None:
    sf.write(tmp_path / "r.wav", tone(44100), 44100, subtype="FLOAT")
    y, sr = load_audio(tmp_path / "r.wav", sr=16000)
    assert sr == 16000
    np.testing.assert_allclose(y, soxr.resample(tone(44100), 44100, 16000), atol=1e-6)


def test_8k_files_are_upsampled_as_the_worker_does(tmp_path: Path) -> None:
    """Offline (classify, training) gets the streaming resampler's samples for 8 kHz."""
    sf.write(tmp_path / "call.wav", tone(8000), 8000, subtype="FLOAT")
    y, sr = load_audio(tmp_path / "call.wav", sr=16000)
    assert sr == 16000
    streamed = StreamResampler(8000, 16000)
    chunks = [streamed.process(c) for c in np.array_split(tone(8000), 7)]
    expected = np.concatenate([*chunks, streamed.process(np.zeros(0), last=True)])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)


def test_missing_and_garbage_files_name_the_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF and nonsense")
    for path in (tmp_path / "missing.wav", garbage):
        with pytest.raises(AudioFileError) as info:
            load_audio(path)
        assert info.value.reason == "unreadable_file"
        assert str(path) in str(info.value)
        assert info.value.path == str(path)
        assert isinstance(info.value, InputError)


def test_empty_file(tmp_path: Path) -> None:
    sf.write(tmp_path / "e.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(AudioFileError) as info:
        load_audio(tmp_path / "e.wav")
    assert info.value.reason == "empty_file"
    assert "e.wav" in str(info.value)


def test_audio_files_scans_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.wav", "sub/a.FLAC", "notes.txt", "c.ogg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in audio_files(tmp_path)] == [
        "b.wav",
        "c.ogg",
        "sub/a.FLAC",
    ]


def test_a_missing_file_or_a_folder_says_what_it_is(tmp_path: Path) -> None:
    """libsndfile says ``Error opening '...': System error.`` for both; we name the cause."""
    with pytest.raises(AudioFileError, match="does not exist") as missing:
        load_audio(tmp_path / "missing.wav")
    assert "System error" not in str(missing.value)
    with pytest.raises(AudioFileError, match="is a folder, not an audio file"):
        load_audio(tmp_path)
