"""The instrument-solo corpus: phrases, rooms, recorded kits, Qt resources, batches."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.corpus import packages, phrases, recorded, room, solos, synth
from models.corpus.music import SOUNDFONT
from models.corpus.qtresource import ResourceError, read_resource
from models.realset.sources import load_manifest


@pytest.mark.parametrize("label", phrases.MELODIC)
def test_phrases_stay_in_range_and_in_time(label: str) -> None:
    low, high = phrases.RANGES[label]
    for seed in range(200):
        notes = phrases.phrase(label, rng=np.random.default_rng(seed), duration_s=3.0)
        assert notes
        assert all(low <= n.pitch <= high + 9 for n in notes)  # double stops add ≤ a sixth
        assert all(0.0 <= n.start_beats < 3.0 and n.duration_beats > 0 for n in notes)
        assert all(1 <= n.velocity <= 127 for n in notes)


def test_phrases_are_seeded_and_refuse_drums() -> None:
    a = phrases.phrase("violin", rng=np.random.default_rng(4), duration_s=2.0)
    assert a == phrases.phrase("violin", rng=np.random.default_rng(4), duration_s=2.0)
    with pytest.raises(ValueError, match="drums"):
        phrases.phrase("drums", rng=np.random.default_rng(4), duration_s=2.0)


def test_drum_hits_keep_time_and_play_kick_snare_and_a_cymbal() -> None:
    for seed in range(20):
        hits = phrases.drum_hits(rng=np.random.default_rng(seed), duration_s=2.5)
        assert all(0.0 <= t < 2.5 for t, _, _ in hits)
        assert {role for _, role, _ in hits} <= set(phrases.GM_DRUM_NOTES)
        assert {"kick", "snare"} <= {role for _, role, _ in hits}


def test_room_impulse_starts_with_the_direct_sound_and_decays() -> None:
    h = room.room_impulse(rng=np.random.default_rng(0), rt60_s=(0.5, 0.5))
    assert h[0] == 1.0 and h.size == 8000
    first, last = np.square(h[1:2000]).sum(), np.square(h[-2000:]).sum()
    assert last < first / 100  # 60 dB over the RT60: the last quarter is far quieter


def test_recording_chain_keeps_length_and_loudness() -> None:
    rng = np.random.default_rng(1)
    y = synth.tone(440.0, 1.0, amplitude=0.3)
    for _ in range(5):
        out = room.recording_chain(y, rng=rng)
        assert out.shape == y.shape and out.dtype == np.float32
        assert synth.rms_dbfs(out) == pytest.approx(synth.rms_dbfs(y), abs=0.01)


def test_microphone_high_pass_removes_rumble() -> None:
    y = synth.tone(3.0, 2.0, amplitude=0.3) + synth.tone(1000.0, 2.0, amplitude=0.3)
    out = room.microphone(y, rng=np.random.default_rng(2))
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[6] < spectrum[2000] / 10  # 3 Hz and 1 kHz bins at 0.5 Hz resolution


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-2 Qt resource: root → "res" → files (zlib-compressed when asked)."""
    names, name_at = b"", {}
    for name in ["res", *files]:
        name_at[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    data, data_at = b"", {}
    for name, (payload, packed) in files.items():
        data_at[name] = len(data)
        body = struct.pack(">I", len(payload)) + zlib.compress(payload) if packed else payload
        data += struct.pack(">I", len(body)) + body
    tree = struct.pack(">IHII", 0, 2, 1, 1) + bytes(8)  # root: one child, node 1
    tree += struct.pack(">IHII", name_at["res"], 2, len(files), 2) + bytes(8)
    for name, (_, packed) in files.items():
        tree += struct.pack(">IHHHI", name_at[name], 1 if packed else 0, 0, 0, data_at[name])
        tree += bytes(8)
    head = 20
    return (
        b"qres"
        + struct.pack(">IIII", 2, head, head + len(tree), head + len(tree) + len(data))
        + tree
        + data
        + names
    )


def test_qt_resource_files_come_back_byte_for_byte(tmp_path: Path) -> None:
    files = {"a.ogg": (b"OggS" + bytes(range(200)), False), "README": (b"hello " * 50, True)}
    path = tmp_path / "x.rcc"
    path.write_bytes(_rcc(files))
    assert read_resource(path) == {"res/a.ogg": files["a.ogg"][0], "res/README": b"hello " * 50}


def test_a_file_that_is_not_a_qt_resource_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "song.ogg"
    path.write_bytes(b"OggS" + bytes(40))
    with pytest.raises(ResourceError, match=r"song\.ogg.*qres"):
        read_resource(path)
    broken = tmp_path / "cut.rcc"
    broken.write_bytes(_rcc({"a.ogg": (bytes(100), False)})[:60])
    with pytest.raises(ResourceError, match=r"cut\.rcc"):
        read_resource(broken)


def _kit(folder: Path, names: dict[str, str]) -> None:
    folder.mkdir()
    instruments = ""
    for i, (name, file) in enumerate(names.items()):
        t = np.arange(4000) / 16000
        hit = (np.sin(2 * np.pi * (60 + 200 * i) * t) * np.exp(-t * 30)).astype(np.float32)
        sf.write(folder / file, hit, 16000)
        instruments += (
            f"<instrument><id>{i}</id><name>{name}</name>"
            f"<layer><filename>{file}</filename><min>0</min><max>1</max></layer></instrument>"
        )
    (folder / "drumkit.xml").write_text(
        f"<drumkit_info><name>{folder.name}</name><instrumentList>{instruments}"
        "</instrumentList></drumkit_info>"
    )


def test_recorded_kits_need_kick_snare_and_hat_and_play_grooves(tmp_path: Path) -> None:
    _kit(tmp_path / "Full", {"Kick": "k.wav", "Snare Rock": "s.wav", "Closed HH": "h.wav"})
    _kit(tmp_path / "Hands", {"Hand Clap": "c.wav", "Bongo Hi": "b.wav"})
    kits = recorded.kits(tmp_path)
    assert [k.name for k in kits] == ["Full"]
    hits = phrases.drum_hits(rng=np.random.default_rng(3), duration_s=2.0)
    y = recorded.play_kit(kits[0], hits, rng=np.random.default_rng(3), duration_s=2.0)
    assert y.size == 32000 and synth.rms_dbfs(y) > -40


def test_training_packages_are_none_of_the_evaluation_sources() -> None:
    packages.check_disjoint()
    evaluation = next(iter(load_manifest().sources))
    clash = packages.TrainingPackage(evaluation, "1", "GPL", "x", "y")
    with pytest.raises(packages.TrainingSourceError, match=evaluation):
        packages.check_disjoint((clash,))


def test_a_soundfont_batch_comes_back_as_one_clip_per_plan() -> None:
    kits: list[recorded.Kit] = []
    plans = [
        p
        for i in range(40)
        if (p := solos.plan(0, i, kits)).source == "fluid-soundfont-gm" and p.voices
    ][:3]
    assert plans and all(p.tags for p in plans)
    clips = solos.render_batch(SOUNDFONT, plans)
    for p, y in zip(plans, clips, strict=True):
        assert y.size == synth.n_samples(p.duration_s, 16000)
        assert synth.rms_dbfs(y) > -50
    assert solos.plan(0, 7, kits) == solos.plan(0, 7, kits)


def test_training_packages_are_reserved_for_training_in_the_real_set_manifest() -> None:
    reserved = {r["package"] for r in load_manifest().training}
    assert {p.package for p in packages.ALL} <= reserved


def test_ensemble_shares_add_instruments_and_leave_the_default_corpus_alone() -> None:
    kits: list[recorded.Kit] = []
    default = [solos.plan(0, i, kits) for i in range(200)]
    assert max(len(p.tags) for p in default) == 2
    assert default == [solos.plan(0, i, kits, trio_share=0.0) for i in range(200)]
    ensembles = [solos.plan(0, i, kits, duo_share=1.0, trio_share=1.0) for i in range(200)]
    from_fonts = [p for p in ensembles if p.voices]
    assert from_fonts and all(len(p.tags) == 3 for p in from_fonts)


def test_freepats_share_draws_only_patches_freepats_has_and_leaves_the_default_alone() -> None:
    kits: list[recorded.Kit] = []
    default = [solos.plan(0, i, kits) for i in range(200)]
    assert default == [solos.plan(0, i, kits, freepats_share=0.0) for i in range(200)]
    assert not any(p.source == "freepats" for p in default)
    mixed = [solos.plan(0, i, kits, freepats_share=1.0) for i in range(200)]
    played = [p for p in mixed if p.voices]
    assert played and all(p.source == "freepats" for p in played)
    melodic = [v for p in played for v in p.voices if v.label != "drums"]
    assert {v.label for v in melodic} == set(phrases.MELODIC)
    assert all(v.program in solos.FREEPATS_PROGRAMS for v in melodic)
    assert all(v.program == 0 for p in played for v in p.voices if v.label == "drums")
