"""GradCache: the in-batch negatives loss with memory that does not grow with the batch size.

The scoring is ``functional.InfoNCE`` (shared with MultipleNegativesRankingLoss and the sparse
ranking loss); it scores any slice of query rows, which is what lets the cached loss build the
score matrix a chunk of rows at a time.

A contrastive loss couples every row of a batch, so it cannot be split into independent
mini-batches. GradCache (Gao et al., 2021) splits the *work* instead:

1. embed every column in mini-batches without autograd graphs, remembering the RNG state
   before each mini-batch;
2. compute the loss on those (detached) embeddings and back-propagate it to them only, which
   gives d loss / d embedding for every row (the cache);
3. when the caller runs ``loss.backward()``, re-embed each mini-batch *with* a graph, replaying
   its RNG state so dropout draws the same masks, and back-propagate ``embedding . cached_grad``.

Step 3 runs from a hook on the returned loss tensor, so ``loss.backward()`` (or
``accelerator.backward(loss)`` in ``transformers.Trainer``, with its loss scaling and gradient
accumulation factor) triggers it; the factor the outer backward hands the hook scales every
mini-batch's gradient. Only one mini-batch's activations are alive at any time.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import tqdm
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import get_device_states, set_device_states

from sdk.core.errors import InputError
from sdk.training.losses.base import EncoderLoss, check_columns
from sdk.training.losses.functional import DIRECTIONS, InfoNCE, Similarity, function_name, gather_with_grad
from sdk.util import cos_sim

__all__ = [
    "CachedMultipleNegativesRankingLoss",
    "DIRECTIONS",
    "GradCacheLoss",
    "InfoNCE",
    "RngSnapshot",
    "function_name",
    "gather_with_grad",
]

#: ``loss_fn(embeddings per column, labels, with_backward=...) -> loss`` (see GradCacheLoss)
CachedLossFn = Callable[..., Tensor]


# -- GradCache ---------------------------------------------------------------------------------


class RngSnapshot:
    """The CPU and accelerator RNG states at creation, replayed by ``restored()`` without
    disturbing the RNG stream outside it (so the second forward pass draws the same dropout)."""

    def __init__(self, *tensors: Any) -> None:
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu_state)
            set_device_states(self.devices, self.device_states)
            yield


def batch_rows(features: dict[str, Any]) -> int:
    """Number of rows of a tokenized column."""
    for key in ("input_ids", "attention_mask"):
        value = features.get(key)
        if isinstance(value, Tensor) and value.dim() > 0:
            return value.size(0)
    for value in features.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return value.size(0)
    raise InputError("a tokenized column has no batch tensor (input_ids / attention_mask)")


def slice_rows(features: dict[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Rows ``begin:end`` of a padded column, with the padding columns all of them share dropped.

    Trimming keeps a mini-batch of short texts from being embedded at the whole batch's width;
    leading positions are kept so positions are unchanged.
    """
    rows = batch_rows(features)
    mask = features.get("attention_mask")
    width = keep = None
    if isinstance(mask, Tensor) and mask.dim() == 2:
        width = mask.size(1)
        used = mask[begin:end].bool().any(dim=0)
        if used.any():
            last = int(used.nonzero().max()) + 1
            keep = last if last < width else None
    out: dict[str, Any] = {}
    for key, value in features.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or value.size(0) != rows:
            out[key] = value  # metadata (prompt length, task, ...) shared by all rows
        elif keep is not None and value.dim() >= 2 and value.size(1) == width:
            out[key] = value[begin:end, :keep]
        else:
            out[key] = value[begin:end]
    return out


def mini_batch_ranges(features: dict[str, Any], size: int, num_tokens: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of the mini-batches: ``size`` rows each, or packed to ``num_tokens`` real tokens."""
    rows = batch_rows(features)
    if num_tokens is None:
        return [(begin, min(begin + size, rows)) for begin in range(0, rows, size)]
    mask = features.get("attention_mask")
    if not isinstance(mask, Tensor):
        raise InputError("mini_batch_num_tokens needs an attention_mask to count tokens; use mini_batch_size")
    cumulative = mask.sum(dim=1).cumsum(dim=0).tolist()
    ranges: list[tuple[int, int]] = []
    begin = 0
    while begin < rows:
        before = cumulative[begin - 1] if begin else 0
        end = max(bisect.bisect_right(cumulative, before + num_tokens), begin + 1)  # always progress
        ranges.append((begin, end))
        begin = end
    return ranges


class GradCacheLoss(EncoderLoss):
    """Base of the cached losses: subclasses implement ``loss_from_embeddings`` and call
    ``cached_forward`` from ``forward``.

    ``loss_from_embeddings(embeddings, labels, with_backward)`` gets one (batch, dim) tensor per
    column; with ``with_backward`` it back-propagates (chunk by chunk if it likes) into those
    tensors and returns the detached total. Wrappers such as MatryoshkaLoss pass their own
    ``loss_fn`` to ``cached_forward`` instead of patching the loss.
    """

    #: tells wrappers that gradients reach the model only in ``loss.backward()``
    uses_gradient_cache = True

    def __init__(
        self,
        model: nn.Module,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__(model)
        if not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise InputError(f"{type(self).__name__}: mini_batch_size must be a positive int, got {mini_batch_size!r}")
        if mini_batch_num_tokens is not None and mini_batch_num_tokens <= 0:
            raise InputError(f"{type(self).__name__}: mini_batch_num_tokens must be positive or None")
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None, with_backward: bool = False
                             ) -> Tensor:
        raise NotImplementedError

    def _progress(self, items: Sequence[Any], desc: str) -> Any:
        return tqdm.tqdm(items, desc=desc, disable=not self.show_progress_bar)

    def cached_forward(
        self, features: Sequence[dict[str, Tensor]], labels: Tensor | None, loss_fn: CachedLossFn | None = None
    ) -> Tensor:
        """Steps 1 and 2 (see the module docstring); step 3 is hooked onto the returned tensor."""
        features = list(features)
        loss_fn = loss_fn or self.loss_from_embeddings
        training = torch.is_grad_enabled()
        # boundaries first: modules may edit feature dicts in place while embedding
        ranges = [mini_batch_ranges(f, self.mini_batch_size, self.mini_batch_num_tokens) for f in features]

        embeddings: list[Tensor] = []
        snapshots: list[list[RngSnapshot | None]] = []
        for column, column_ranges in zip(features, ranges, strict=True):
            parts, states = [], []
            for begin, end in self._progress(column_ranges, "Embed mini-batches"):
                part = slice_rows(column, begin, end)
                states.append(RngSnapshot(*part.values()) if training else None)
                with torch.no_grad():
                    parts.append(self.embed(part))
            embedding = torch.cat(parts)
            embeddings.append(embedding.requires_grad_() if training else embedding)
            snapshots.append(states)

        if not training:  # evaluation: nothing to cache
            return loss_fn(embeddings, labels, with_backward=False)

        loss = loss_fn(embeddings, labels, with_backward=True)
        grads = [embedding.grad for embedding in embeddings]
        unused = [str(i) for i, grad in enumerate(grads) if grad is None]
        if unused:
            raise InputError(
                f"{type(self).__name__} did not use text column(s) {', '.join(unused)}; every column is "
                "embedded, so drop the unused column(s) from the dataset"
            )
        loss = loss.detach().requires_grad_()

        def replay(grad_output: Tensor) -> None:
            self._replay(features, ranges, snapshots, grads, grad_output)  # type: ignore[arg-type]

        loss.register_hook(replay)
        return loss

    def _replay(
        self,
        features: list[dict[str, Tensor]],
        ranges: list[list[tuple[int, int]]],
        snapshots: list[list[RngSnapshot]],
        grads: list[Tensor],
        grad_output: Tensor,
    ) -> None:
        """Step 3: re-embed each mini-batch with autograd and push its cached gradient through."""
        runner = self.runner
        remaining = sum(len(r) for r in ranges)
        with torch.enable_grad():
            for column, column_ranges, states, grad in zip(features, ranges, snapshots, grads, strict=True):
                for (begin, end), state in zip(column_ranges, states, strict=True):
                    remaining -= 1
                    # DDP: all-reduce once, after the last mini-batch (an outer no_sync still wins)
                    defer = isinstance(runner, DistributedDataParallel) and remaining > 0
                    with runner.no_sync() if defer else contextlib.nullcontext():  # type: ignore[union-attr]
                        with state.restored():
                            embedding = self.embed(slice_rows(column, begin, end))
                        if not embedding.requires_grad:  # frozen model
                            continue
                        cached = grad[begin:end]
                        dtype = torch.promote_types(embedding.dtype, cached.dtype)
                        if dtype in (torch.float16, torch.bfloat16):
                            dtype = torch.float32
                        surrogate = torch.dot(embedding.flatten().to(dtype), cached.flatten().to(dtype))
                        (surrogate * grad_output).backward()


class CachedMultipleNegativesRankingLoss(InfoNCE, GradCacheLoss):
    """MultipleNegativesRankingLoss with GradCache: same loss and gradients, memory bounded by
    ``mini_batch_size`` instead of the batch size (about 20-50% slower)."""

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        similarity_fct: Similarity = cos_sim,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = False,
        directions: Sequence[str] = ("query_to_doc",),
        partition_mode: str = "joint",
        show_progress_bar: bool = False,
        hardness_mode: str | None = None,
        hardness_strength: float = 0.0,
    ) -> None:
        super().__init__(model, mini_batch_size, mini_batch_num_tokens, show_progress_bar)
        self._set_infonce_options(
            scale, similarity_fct, gather_across_devices, directions, partition_mode, hardness_mode, hardness_strength
        )

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(features)
        check_columns(self, len(features), "2 or more (anchor, positive, negatives...)", len(features) >= 2)
        return self.cached_forward(features, labels)

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None,
                             with_backward: bool = False) -> Tensor:
        """The InfoNCE loss, ``mini_batch_size`` query rows at a time (bounds the score matrix too)."""
        queries, docs, offset = self.split_columns(embeddings)
        docs_all = torch.cat(docs, dim=0)
        batch = embeddings[0].size(0)
        total: Tensor | float = 0.0
        for begin in self._progress(range(0, batch, self.mini_batch_size), "Calculating loss"):
            end = min(begin + self.mini_batch_size, batch)
            rows = torch.arange(offset + begin, offset + end, device=queries.device)
            part = self.row_losses(queries, docs, docs_all, rows).mean() * (end - begin) / batch
            if with_backward:
                part.backward()
                part = part.detach()
            total = total + part
        return total  # type: ignore[return-value]

    def get_config_dict(self) -> dict[str, Any]:
        config = self.infonce_config()
        return {
            "scale": config.pop("scale"),
            "similarity_fct": config.pop("similarity_fct"),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
            **config,
        }

    @property
    def citation(self) -> str:
        return (
            "@misc{gao2021scaling,\n    title={Scaling Deep Contrastive Learning Batch Size under Memory "
            "Limited Setup},\n    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},\n"
            "    year={2021}, eprint={2101.06983}, archivePrefix={arXiv}, primaryClass={cs.LG}\n}\n"
        )
