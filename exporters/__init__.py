"""Keras → ONNX export (tf2onnx), model manifest, and the Keras/ONNX parity gate."""
