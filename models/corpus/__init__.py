"""tympan's synthetic audio corpus, rendered locally from Debian tools and numpy.

Nothing is downloaded: speech comes from espeak-ng and festival, music from
fluidsynth with the FluidR3 GM soundfont, tones and noises from numpy, and the
telephone channel (8 kHz G.711) from numpy + soxr.  See ``docs/corpus.md``.

Modules, in the order a clip is made:

``synth``    numpy signals: tones, DTMF, call-progress cadences, noises, hold music
``speech``   :class:`~models.corpus.speech.Voice` and espeak-ng/festival rendering
``identities`` the speaker-embedding model's training and held-out voices and channels
``music``    composition, a Standard MIDI writer, fluidsynth rendering
``channel``  G.711 μ-law/A-law, telephone band, gain, noise at an SNR, sox effects
``build``    the datasets on disk (``python -m models.corpus ...``)
``tools``    the boundary with external programs (missing tool -> ``ToolError``)

Importing this package imports numpy/scipy/soundfile/soxr only (no TensorFlow).
"""
