"""espeak-ng and festival render real, non-silent speech at the requested rate."""

from __future__ import annotations

import numpy as np
import pytest

from models.corpus import speech, synth
from models.corpus.speech import Voice


@pytest.mark.parametrize("sr", [16000, 8000])
def test_espeak_render_is_non_silent_at_the_requested_rate(sr: int) -> None:
    y = speech.render(
        Voice("espeak", "en-us", "m3", 45, 160), "Hello, thank you for calling.", sr=sr
    )
    assert y.dtype == np.float32
    assert 0.8 * sr < y.size < 4 * sr  # ~1.5 s of speech at sr
    assert synth.rms_dbfs(y) > -35


def test_variants_change_the_voice_and_identity() -> None:
    text = "Please hold the line."
    a = speech.render(Voice("espeak", "en-us", "m3"), text)
    b = speech.render(Voice("espeak", "en-us", "f2"), text)
    assert not (a.size == b.size and np.allclose(a, b))
    assert Voice("espeak", "en-us", "m3", 45, 160).identity == "espeak-en-us-m3-p45-s160"


def test_unknown_variant_is_a_tool_error_naming_it() -> None:
    from stream.errors import ToolError

    with pytest.raises(ToolError, match="nosuchvariant"):
        speech.render(Voice("espeak", "en-us", "nosuchvariant"), "hello")


@pytest.mark.skipif(not speech.festival_voices(), reason="no festival voice installed")
def test_festival_render_is_non_silent() -> None:
    name = (
        "kal_diphone" if "kal_diphone" in speech.festival_voices() else speech.festival_voices()[0]
    )
    v = Voice("festival", name, pitch_cents=200)
    y = speech.render(v, "Thank you for waiting.")
    assert y.size > 0.5 * 16000 and synth.rms_dbfs(y) > -35
    assert v.identity.startswith("festival-") and v.identity.endswith("-c+200")


def test_sentences_are_seeded_and_varied() -> None:
    a = [speech.sentence(np.random.default_rng(4)) for _ in range(3)]
    b = [speech.sentence(np.random.default_rng(4)) for _ in range(3)]
    rng = np.random.default_rng(5)
    many = {speech.sentence(rng) for _ in range(30)}
    assert a == b and len(many) > 20


def test_utterance_reaches_the_minimum_length() -> None:
    y, texts = speech.utterance(Voice("espeak", "en-gb", "f1"), np.random.default_rng(0), min_s=3.0)
    assert y.size >= 3 * 16000 and texts
