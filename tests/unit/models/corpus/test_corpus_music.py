"""MIDI writing and fluidsynth rendering."""

from __future__ import annotations

import numpy as np
import pytest

from models.corpus import music, synth


def test_midi_bytes_are_a_format_1_file_with_one_track_per_part() -> None:
    piece = music.compose(["piano", "bass", "drums"], rng=np.random.default_rng(0), duration_s=2)
    data = music.midi_bytes(piece)
    assert data[:4] == b"MThd"
    fmt, ntrks, division = (
        int.from_bytes(data[8:10]),
        int.from_bytes(data[10:12]),
        int.from_bytes(data[12:14]),
    )
    assert (fmt, ntrks, division) == (1, 4, music.TICKS_PER_BEAT)
    assert data.count(b"MTrk") == 4
    # Program changes for piano (0) and bass (33); drums on channel 10 (0x99 note-ons).
    assert bytes([0xC0, 0]) in data and bytes([0xC1, 33]) in data and b"\x99" in data


def test_vlq_encoding() -> None:
    assert music._vlq(0) == b"\x00"
    assert music._vlq(0x7F) == b"\x7f"
    assert music._vlq(0x80) == b"\x81\x00"
    assert music._vlq(0x0FFFFFFF) == b"\xff\xff\xff\x7f"


def test_compose_is_seeded_and_refuses_unknown_instruments() -> None:
    a = music.compose(["violin"], rng=np.random.default_rng(1), duration_s=3)
    b = music.compose(["violin"], rng=np.random.default_rng(1), duration_s=3)
    assert a == b and a.instruments == ("violin",)
    with pytest.raises(ValueError, match="kazoo"):
        music.compose(["kazoo"], rng=np.random.default_rng(1), duration_s=3)


@pytest.mark.parametrize("instruments", [("piano",), ("flute", "bass", "drums")])
def test_fluidsynth_render_is_non_silent_and_exact_length(instruments: tuple[str, ...]) -> None:
    piece = music.compose(instruments, rng=np.random.default_rng(2), duration_s=1.5)
    y = music.render(piece, duration_s=1.5, sr=16000)
    assert y.size == 24000 and y.dtype == np.float32
    assert synth.rms_dbfs(y) > -45


def test_hold_music_reports_what_played() -> None:
    y, tags = music.hold_music(1.0, rng=np.random.default_rng(3))
    assert y.size == 16000 and tags and set(tags) <= {*music.INSTRUMENTS, "synth"}
