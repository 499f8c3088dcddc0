"""A real-recording evaluation set of our own (issue #25), built from Debian packages.

Every clip is a recording of a person or an instrument, never a synthesised voice or a
rendered score: letters and syllables spoken by native speakers (KLettres), words
spoken by native speakers (KTuberling), ALSA's spoken channel-test voice, produced game
music (Drascula, Advanced Strategic Command) and solo instrument recordings (LMMS and
Sonic Pi sample packs). :mod:`models.realset.sources` reads ``manifest.json`` (package,
version, file, SHA-256, licence, label and speaker of every part);
:mod:`models.realset.build` fetches the packages with ``apt-get download``, extracts
them with ``dpkg-deb -x`` into a cache and lays the clips out in the folder layouts
``tympan evaluate`` and ``tympan speakers evaluate`` read; :mod:`models.realset.evaluate`
prints each shipped model's figures on it.

The audio is never committed: ``python -m models.realset build`` recreates it.
"""
