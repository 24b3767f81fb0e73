"""Encoders built from sentence-transformers-style module stacks.

The encoder classes are ``dense.DenseEncoder``, ``sparse.SparseEncoder`` and
``cross_encoder.CrossEncoder``, on the shared ``base.ModuleEncoder`` / ``base.VectorEncoder``.
They load through ``options`` (``LoadOptions`` + ``load_stack``, using ``loading`` and
``weights``), run on a backend chosen in ``backends`` (``backends.pytorch``, ``backends.onnx``),
get their batches from ``feed`` (with ``tokenize_fast``) and spread over processes with
``pool``. The layers themselves live in ``modules``.
"""
