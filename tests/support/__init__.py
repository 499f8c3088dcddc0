"""Helpers the tests share, kept out of the runtime packages.

``onnx_models`` builds tiny real ONNX model directories (it needs the ``onnx`` package,
which the ``dev`` and ``train`` extras carry and the worker does not); ``replay`` runs
records through the pipeline synchronously, the worker's twin the tests compare with.
"""
