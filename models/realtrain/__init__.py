"""Real recordings to *train* on (issue #25): Debian packages kept apart from the real set.

``python -m models.realtrain build`` fetches the pinned packages of :mod:`.sources`
(``apt-get download`` + ``dpkg-deb -x``, nothing installed) into
``~/.cache/tympan/realtrain``, cuts labelled clips for the scene classifier and writes
a manifest (package, version, path, SHA-256, licence, label) beside them. Every source
is checked against the evaluation set's manifest (:mod:`models.realset`) first: a
package reserved for evaluation, or a KTuberling voice the evaluation uses, is refused.
"""
