"""One short text through a compiled graph on the CPU, without the batching machinery: a search query.

Why: with an int8 graph a short query's forward pass is about 1.1 ms on one core, and the general
loop (length sort, batch planning, torch tensors in and out, the module chain, torch pooling and
normalization, a thread-count switch) added about 0.6 ms around it (issue 18's 2 ms budget). Here
the Rust tokenizer's ids go straight into the graph as numpy arrays and the pooling runs in numpy
on the one unpadded row.

Only stacks whose result this reproduces exactly take this path: a ``Transformer`` running a
``GraphModel`` with CPU threads (ONNX Runtime's CPU provider, OpenVINO on CPU), then a ``Pooling``
over the modes below, then optionally ``Normalize``; the text must be short enough for the small-
batch thread setting (``SMALL_BATCH_TOKENS``). Anything else (a prompt excluded from pooling, a
Dense layer, SPLADE, a reranker, torch weights, a GPU, a text the fast tokenizer cannot mirror)
returns None and the caller runs the general loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.encoders.backends.graph import GraphModel
from sdk.encoders.modules import Transformer
from sdk.encoders.modules.dense import Normalize
from sdk.encoders.modules.pooling import Pooling

__all__ = ["OneTextPath"]

#: pooling modes whose value on one unpadded row is a plain numpy reduction
_MODES = frozenset({"mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens"})


class OneTextPath:
    """The plan for one stack (``build``); ``run(text)`` is its sentence embedding, shape (1, dim)."""

    def __init__(self, transformer: Transformer, graph: GraphModel, modes: tuple[str, ...], normalize: bool,
                 small_threads: int | None, max_tokens: int) -> None:
        self.transformer, self.graph = transformer, graph
        self.modes, self.normalize = modes, normalize
        self.small_threads, self.max_tokens = small_threads, max_tokens

    @classmethod
    def build(cls, modules: list[Any], small_threads: int | None, max_tokens: int) -> OneTextPath | None:
        if not 2 <= len(modules) <= 3:
            return None
        first, pooling, *rest = modules
        if not (isinstance(first, Transformer) and isinstance(first.auto_model, GraphModel)
                and first.auto_model.narrow_sessions and isinstance(pooling, Pooling)
                and set(pooling.modes) <= _MODES and all(isinstance(m, Normalize) for m in rest)):
            return None
        return cls(first, first.auto_model, tuple(pooling.modes), bool(rest), small_threads, max_tokens)

    def run(self, text: str) -> np.ndarray | None:
        """The embedding of ``text``, or None when this text needs the general loop."""
        ragged = self.transformer.tokenize_ragged([text])
        if ragged is None or not 0 < ragged.lengths[0] <= self.max_tokens:
            return None
        ids = np.asarray(ragged.ids, dtype=np.int64)
        feed: dict[str, np.ndarray] = {}
        graph = self.graph
        graph.session  # noqa: B018  (opens the main session and learns the graph's input names)
        for name in graph._inputs:
            if name == "input_ids":
                feed[name] = ids
            elif name == "attention_mask":
                feed[name] = np.ones_like(ids)
            elif name == "token_type_ids":
                feed[name] = (np.asarray(ragged.type_ids, dtype=np.int64) if ragged.type_ids is not None
                              else np.full_like(ids, ragged.pad_type_id))
            else:
                return None
        tokens = graph._run(graph.session_with(self.small_threads), feed)[0]
        parts = [_pool(mode, tokens) for mode in self.modes]
        vec = (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.float32, copy=False)
        if self.normalize:
            vec = vec / max(float(np.sqrt(np.dot(vec, vec))), 1e-12)  # torch's normalize clamps the norm alike
        return vec[None, :]


def _pool(mode: str, tokens: np.ndarray) -> np.ndarray:
    """``Pooling._pool`` on one row with every position attended."""
    if mode == "cls":
        return tokens[0]
    if mode == "lasttoken":
        return tokens[-1]
    if mode == "max":
        return tokens.max(axis=0)
    total = tokens.sum(axis=0, dtype=np.float32)
    return total / (np.float32(len(tokens)) if mode == "mean" else np.sqrt(np.float32(len(tokens))))
