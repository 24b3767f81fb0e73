"""Encode a Ray dataset with a pool of encoder actors: embeddings at scale, for Parquet or anything else.

    import ray
    from sdk.encoders.ray_data import encode_dataset

    ds = ray.data.read_parquet("s3://bucket/passages/")                      # a "text" column
    ds = encode_dataset(ds, "sentence-transformers/all-MiniLM-L6-v2", actors=8, gpus_per_actor=1)
    ds.write_parquet("s3://bucket/embeddings/")                                # + an "embedding" column

Each actor loads the model once (``DenseEncoder`` or ``SparseEncoder``, any backend: ``backend="onnx",
model_kwargs={"file_name": "model_qint8_avx512_vnni.onnx"}`` runs int8 on CPUs) and encodes
``batch_size`` rows per call, in the row order of its batch. Dense vectors become a fixed-size float
column (``output``); sparse ones two list columns (``output + "_indices"``, ``output + "_values"``).
``role`` picks the prompt: "document" (default), "query", or None for the model's plain ``encode``.
Ray is imported only when this module's function is called (the ``ray`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.core.errors import ConfigError, MissingDependencyError

__all__ = ["encode_dataset"]

_ROLES = ("document", "query", None)


class _Encoder:
    """A Ray actor holding one encoder."""

    def __init__(self, kind: str, model: Any, device: str, role: str | None, column: str, output: str,
                 batch_size: int, threads: int, kwargs: Mapping[str, Any]) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        if isinstance(model, (str, os.PathLike)):
            if kind == "dense":
                from sdk.encoders.dense import DenseEncoder as cls
            else:
                from sdk.encoders.sparse import SparseEncoder as cls  # type: ignore[assignment]
            model = cls(str(model), device=device, **kwargs)
        self.encoder, self.kind, self.role = model, kind, role
        self.column, self.output, self.batch_size = column, output, batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.column]]
        encode = {"document": getattr(self.encoder, "encode_document", None),
                  "query": getattr(self.encoder, "encode_query", None)}.get(self.role or "") or self.encoder.encode
        out = dict(batch)
        if self.kind == "dense":
            out[self.output] = np.asarray(encode(texts, batch_size=self.batch_size), dtype=np.float32)
            return out
        vectors = list(encode(texts, batch_size=self.batch_size))
        out[self.output + "_indices"] = _ragged([np.asarray(v.indices, dtype=np.int64) for v in vectors])
        out[self.output + "_values"] = _ragged([np.asarray(v.values, dtype=np.float32) for v in vectors])
        return out


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding one array per row (numpy would stack arrays of equal length)."""
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out


def encode_dataset(dataset: Any, model: Any, *, kind: str = "dense", column: str = "text", output: str = "embedding",
                   role: str | None = "document", actors: int = 1, gpus_per_actor: float = 0.0,
                   cpus_per_actor: float = 1.0, batch_size: int = 64, device: str | None = None,
                   **encoder_kwargs: Any) -> Any:
    """``dataset`` with the vectors of its ``column`` added (lazily: Ray runs it when the result is consumed).

    ``model``: a model folder or hub id (each actor loads it), or an encoder object (shipped to the
    actors pickled). ``encoder_kwargs`` go to the encoder class (``backend``, ``model_kwargs``,
    ``truncate_dim``, ...). ``device`` defaults to "cuda" with ``gpus_per_actor`` and "cpu" otherwise.
    """
    if kind not in ("dense", "sparse"):
        raise ConfigError(f"kind must be 'dense' or 'sparse', got {kind!r}")
    if role not in _ROLES:
        raise ConfigError(f"role must be 'document', 'query' or None, got {role!r}")
    for name, value in (("actors", actors), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(model, (str, os.PathLike)) and encoder_kwargs:
        raise ConfigError("encoder options apply to a model loaded by name; configure the encoder object instead")
    try:
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray") from exc
    if column not in (dataset.columns(fetch_if_missing=True) or []):
        raise ConfigError(f"the dataset has no column {column!r} (it has {dataset.columns()}); pass column=")
    device = device or ("cuda" if gpus_per_actor else "cpu")
    return dataset.map_batches(
        _Encoder, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs={"kind": kind, "model": model, "device": device, "role": role, "column": column,
                               "output": output, "batch_size": batch_size, "threads": max(1, int(cpus_per_actor)),
                               "kwargs": dict(encoder_kwargs)},
    )
