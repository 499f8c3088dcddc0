"""Real uploads decode: files ffmpeg encodes (MP3, AAC/M4A, Opus, Vorbis, FLAC) read back
close to the WAV they came from, and what nothing reads is refused by name."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream.audio import load_audio
from stream.audio.decoders import (
    DecodeError,
    DecodeLimits,
    FfmpegDecoder,
    SoundfileDecoder,
    decode,
)
from stream.audio.files import audio_files
from stream.errors import AudioFileError

SR = 44100
SECONDS = 3.0

# codec → (ffmpeg arguments, lowest correlation with the source accepted)
CODECS = {
    "flac": (["-c:a", "flac"], 0.9999),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "128k"], 0.98),
    "m4a": (["-c:a", "aac", "-b:a", "128k"], 0.98),
    "opus": (["-c:a", "libopus", "-b:a", "96k"], 0.95),
    "ogg": (["-c:a", "libvorbis", "-q:a", "5"], 0.98),
}


def rendered_music(seconds: float = SECONDS, sr: int = SR) -> np.ndarray:
    """A plucked chord progression with noise: broadband, with attacks a codec must keep."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for k, root in enumerate((220.0, 261.6, 196.0, 246.9) * 3):
        start = k * seconds / 12
        env = np.where(t >= start, np.exp(-(t - start) * 4.0), 0.0)
        for ratio in (1.0, 1.26, 1.5, 2.0):
            y += env * np.sin(2 * np.pi * root * ratio * t) / 4
    y += 0.02 * rng.standard_normal(t.size)
    stereo = np.stack([y, np.roll(y, 40)], axis=1) * 0.4
    return stereo.astype(np.float32)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uploads")
    wav = root / "source.wav"
    sf.write(wav, rendered_music(), SR, subtype="PCM_16")
    files = {"wav": wav}
    for ext, (args, _) in CODECS.items():
        out = root / f"upload.{ext}"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), *args, str(out)],
            check=True,
        )
        files[ext] = out
    return files


def _best_correlation(y: np.ndarray, ref: np.ndarray, max_lag: int = 3000) -> float:
    """Pearson correlation at the best lag (codecs add priming delay / padding)."""
    n = min(len(y), len(ref)) - max_lag
    scores = []
    for lag in range(0, max_lag, 1):
        for a, b in ((y[lag : lag + n], ref[:n]), (y[:n], ref[lag : lag + n])):
            scores.append(float(np.corrcoef(a, b)[0, 1]))
        if scores[-1] > 0.999 or scores[-2] > 0.999:
            break
    return max(scores)


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_each_upload_format_decodes_close_to_its_wav(encoded: dict[str, Path], ext: str) -> None:
    ref, ref_sr = load_audio(encoded["wav"])
    y, sr = load_audio(encoded[ext], sr=ref_sr)
    assert sr == ref_sr and y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(ref)) / sr < 0.1, f"{ext}: {len(y) / sr:.3f} s vs {len(ref) / sr:.3f} s"
    assert _best_correlation(y[::4], ref[::4], max_lag=800) >= CODECS[ext][1]


def test_m4a_is_what_needs_the_fallback(encoded: dict[str, Path]) -> None:
    """libsndfile refuses AAC in MP4 ("Format not recognised"); ffmpeg reads it."""
    with pytest.raises(DecodeError):
        SoundfileDecoder().decode(str(encoded["m4a"]), DecodeLimits())
    frames, rate = FfmpegDecoder().decode(str(encoded["m4a"]), DecodeLimits())
    assert rate == SR and frames.shape[1] == 2


def test_channels_stay_apart_and_rate_is_the_files(encoded: dict[str, Path]) -> None:
    both, sr = load_audio(encoded["m4a"], mono=False)
    assert sr == SR and both.shape[0] == 2
    lag40 = _best_correlation(both[0], np.roll(both[1], -40), max_lag=5)
    assert lag40 > 0.99  # the right channel is the left one 40 samples later


def test_resampled_upload_is_at_the_asked_rate(encoded: dict[str, Path]) -> None:
    y, sr = load_audio(encoded["mp3"], sr=16000)
    assert sr == 16000 and abs(len(y) / sr - SECONDS) < 0.1


def test_folder_scan_finds_every_upload_format(encoded: dict[str, Path]) -> None:
    found = {p.suffix for p in audio_files(encoded["wav"].parent)}
    assert found == {".wav", ".flac", ".mp3", ".m4a", ".opus", ".ogg"}


def test_garbage_is_refused_naming_the_file_and_each_decoders_reason(tmp_path: Path) -> None:
    bad = tmp_path / "song.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 8)
    with pytest.raises(AudioFileError) as info:
        load_audio(bad)
    message = str(info.value)
    assert str(bad) in message and "soundfile:" in message and "ffmpeg" in message
    assert info.value.reason == "unreadable_file"


def test_too_long_audio_is_refused_not_truncated(encoded: dict[str, Path]) -> None:
    for ext in ("wav", "m4a"):
        with pytest.raises(AudioFileError, match=r"longer than the 1 s accepted"):
            load_audio(encoded[ext], limits=DecodeLimits(max_seconds=1.0))


def test_names_that_look_like_options_or_urls_stay_files(
    encoded: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("-i.m4a", "http:example.m4a"):
        (tmp_path / name).write_bytes(encoded["m4a"].read_bytes())
        y, sr = load_audio(name)
        assert sr == SR and abs(len(y) / sr - SECONDS) < 0.1


def test_a_missing_program_or_a_slow_one_is_a_decode_error(encoded: dict[str, Path]) -> None:
    path = str(encoded["m4a"])
    with pytest.raises(DecodeError, match="not installed"):
        FfmpegDecoder(ffmpeg="no-such-ffmpeg", ffprobe="no-such-ffprobe").decode(
            path, DecodeLimits()
        )
    with pytest.raises(DecodeError, match="took longer than"):
        FfmpegDecoder().decode(path, DecodeLimits(timeout_s=1e-4))


def test_playlists_cannot_pull_in_other_files(encoded: dict[str, Path], tmp_path: Path) -> None:
    """A concat list or an HLS playlist would make ffmpeg read files the caller never
    named (plain ffmpeg reads both of these); only audio demuxers are allowed."""
    (tmp_path / "secret.wav").write_bytes(encoded["wav"].read_bytes())
    (tmp_path / "secret.flac").write_bytes(encoded["flac"].read_bytes())
    concat = tmp_path / "list.m4a"
    concat.write_text("ffconcat version 1.0\nfile 'secret.wav'\n")
    hls = tmp_path / "list.mp3"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\nsecret.flac\n#EXT-X-ENDLIST\n")
    for path in (concat, hls):
        plain = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", f"file:{path}", "-f", "f32le", "-"],
            capture_output=True,
            check=False,
        )
        assert plain.returncode == 0 and len(plain.stdout) > 0  # what unconfined ffmpeg does
        with pytest.raises(DecodeError):
            decode(str(path))
