"""ONNX inference for serving: manifest checks, the onnxruntime session, model lookup.

No TensorFlow and no ``onnx`` package here: a worker serves the exported ``model.onnx``
with onnxruntime. Tests build tiny real model directories with tests/support/onnx_models.py.
"""

from stream.inference.manifest import Manifest, TensorInfo, load_manifest
from stream.inference.repository import default_repo, list_models, resolve_model_dir
from stream.inference.session import ModelOutput, OnnxModel

__all__ = [
    "Manifest",
    "ModelOutput",
    "OnnxModel",
    "TensorInfo",
    "default_repo",
    "list_models",
    "load_manifest",
    "resolve_model_dir",
]
