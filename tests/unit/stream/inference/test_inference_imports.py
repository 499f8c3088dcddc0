"""Serving code never pulls in the training stack (TensorFlow, Keras, models, exporters).

Nor the ``onnx`` package: it is not a dependency of the worker (the ``dev`` and ``train``
extras carry it, for the test models and the exporter).
"""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "stream.inference",
    "stream.inference.clips",
    "stream.inference.evaluation",
    "stream.cli.classify",
    "stream.cli.evaluate",
    "stream.cli",
    "stream.worker.build",
    "stream.control.follower",
    "stream.control.gate",
]


def test_no_training_stack_in_sys_modules() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'tf2onnx', 'models', 'exporters', 'matplotlib', 'onnx'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_pinned() -> None:
    import stream.inference

    assert sorted(stream.inference.__all__) == [
        "Manifest",
        "ModelOutput",
        "OnnxModel",
        "TensorInfo",
        "default_repo",
        "list_models",
        "load_manifest",
        "resolve_model_dir",
    ]
