"""ONNX inference for serving: manifest checks, the onnxruntime session, model lookup.

No TensorFlow here: a worker serves the exported ``model.onnx`` with onnxruntime.
``stream.inference.testing`` builds a tiny real model directory for tests.
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
