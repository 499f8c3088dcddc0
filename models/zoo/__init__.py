"""The default models shipped with tympan, and the recipe that rebuilds them.

``models/zoo/<name>/<version>/`` is the default model repository
(``docs/architecture.md``): ``model.onnx``, ``manifest.json``, ``golden.npz``,
``MODEL_CARD.md``, ``report.json``/``report.md`` and the two PNGs. Rebuild with
``python -m models.zoo build [scene|scene/1|instruments|all]`` (see
:mod:`models.zoo.recipes`).
"""

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
