"""What every encoder shares: a module stack, device handling, input checks, batching, saving.

DenseEncoder, SparseEncoder and CrossEncoder differ only in the modules they run and in
what they do with the output; keeping the loop here means one place to make fast.
``VectorEncoder`` adds what the two text-to-vector encoders (dense and sparse) share:
prompts and the ``encode_query`` / ``encode_document`` shortcuts.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from sdk.core.errors import CapabilityError, InputError
from sdk.core.version import __version__
from sdk.encoders.modules import CLIPModel, EncoderModule, Transformer
from sdk.encoders.modules.clip import is_image

__all__ = ["SMALL_BATCH_TOKENS", "ModuleEncoder", "VectorEncoder", "check_texts", "intra_op_threads", "pick_device"]

T = TypeVar("T")

#: Prompt names ``encode_query`` / ``encode_document`` look for, in this order (sentence-transformers' conventions).
ROLE_PROMPTS: dict[str, tuple[str, ...]] = {"query": ("query",), "document": ("document", "passage", "corpus")}

#: A CPU batch of at most this many token positions (rows x padded width) runs on ``small_batch_threads``
#: intra-op threads: a search query. Its matrix products are too small to gain from an OpenMP team,
#: and the team's lock-step barriers make every one of them wait for the slowest thread: with one of
#: two cores busy elsewhere (the database, another request) a 2-thread team took a single MiniLM
#: query from 13 ms to 490 ms (bench/latency.py, issue 18), and its spinning workers then took the
#: core the next stage needed.
SMALL_BATCH_TOKENS = 64


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block on at most ``threads`` torch intra-op threads, in the calling thread only.

    With OpenMP (torch's CPU backend) the thread count is a per-thread setting, so other threads
    encoding meanwhile keep theirs; the previous count is restored on exit. ``None``: unchanged."""
    previous = torch.get_num_threads()
    if threads is None or previous <= threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _side_by_side(feed: Iterable[tuple[np.ndarray, dict[str, Any]]], run: Callable[[dict[str, Any], int | None], Any],
                  sessions: list[tuple[Any, Any]], threads: int) -> Iterator[tuple[np.ndarray, Any]]:
    """``run`` over the batches of ``feed`` on ``threads`` worker threads at once, each on one CPU thread
    and pinned to the graphs' concurrent sessions; results in feed order, at most 2 x ``threads`` batches
    in flight (a worker's error surfaces here)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    def work(features: dict[str, Any]) -> Any:
        with torch.inference_mode(), ExitStack() as pinned:
            for graph, session in sessions:
                pinned.enter_context(graph.using(session))
            return run(features, 1)

    pending: deque[tuple[np.ndarray, Any]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="sdk-graph") as pool:
        try:
            for idx, features in feed:
                pending.append((idx, pool.submit(work, features)))
                if len(pending) >= 2 * threads:
                    idx, future = pending.popleft()
                    yield idx, future.result()
            while pending:
                idx, future = pending.popleft()
                yield idx, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def pick_device(device: str | torch.device | None) -> torch.device:
    """The requested device, else CUDA, else Apple MPS, else CPU."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"unknown device {device!r}; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_texts(texts: Any, what: str = "sentences", images: bool = False) -> tuple[list[Any], bool]:
    """Validate input texts; return them as a list and whether a single item was given.

    ``images=True`` (an encoder whose stack reads images, e.g. CLIP) also lets PIL images and
    image paths (``pathlib.Path``; a ``str`` is always text) through; without it they are refused
    with the fix, before any model runs.
    """
    if isinstance(texts, str) or is_image(texts):
        if not images and not isinstance(texts, str):
            raise InputError(_text_only(what, texts))
        return [texts], True
    if texts is None:
        raise InputError(f"{what} is None; pass a string or a list of strings")
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    if not isinstance(texts, Iterable) or isinstance(texts, (bytes, dict)):
        raise InputError(f"{what} must be a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if isinstance(text, str):
            continue
        if is_image(text):
            if images:
                continue
            raise InputError(_text_only(f"{what}[{i}]", text))
        raise InputError(
            f"{what}[{i}] is {type(text).__name__} ({text!r:.40}), not a string"
            + (", a PIL image or a pathlib.Path of an image" if images else "")
            + "; convert or drop it before encoding"
        )
    return items, False


def _in_order(parts: list[torch.Tensor], positions: list[np.ndarray]) -> torch.Tensor:
    """One tensor from per-batch ``parts`` whose rows belong at ``positions`` of the caller's list."""
    if len(parts) == 1 and len(positions[0]) == 1:
        return parts[0]  # one text: nothing to put in order
    merged = torch.cat(parts)
    inverse = np.empty(len(merged), dtype=np.int64)
    inverse[np.concatenate(positions)] = np.arange(len(merged))
    return merged.index_select(0, torch.from_numpy(inverse).to(merged.device))


def _text_only(what: str, item: Any) -> str:
    return (f"{what} is an image ({type(item).__name__}), and this encoder reads text only; encode images with an "
            "image-text model (a sentence-transformers CLIP folder such as clip-ViT-B-32), or pass text")


class ModuleEncoder(nn.Sequential):
    """An ordered stack of encoder modules plus the batching loop that runs it."""

    #: ``model_type`` written to config_sentence_transformers.json
    model_type = "SentenceTransformer"
    #: intra-op threads of a small CPU batch (``SMALL_BATCH_TOKENS``); None: torch's own setting
    small_batch_threads: int | None = 1

    def __init__(self, modules: Sequence[tuple[str, EncoderModule]] | Sequence[EncoderModule], device: Any = None):
        named = [(str(i), m) if isinstance(m, nn.Module) else m for i, m in enumerate(modules)]
        if not named:
            raise InputError("an encoder needs at least one module")
        super().__init__(OrderedDict(named))
        self.to(pick_device(device))
        self.eval()

    # -- properties shared by all encoders -----------------------------------------------

    @property
    def device(self) -> torch.device:
        for param in self.parameters():
            return param.device
        return torch.device("cpu")

    @property
    def transformer(self) -> Transformer:
        first = self[0]
        if not isinstance(first, Transformer):
            raise InputError("this encoder's first module is not a Transformer")
        return first

    @property
    def accepts_images(self) -> bool:
        """Whether ``encode`` takes images too (the stack starts with an image-text module such as CLIP)."""
        return bool(getattr(self[0], "accepts_images", False))

    def _text_input(self) -> Transformer | CLIPModel:
        """The module that tokenizes texts: the Transformer, or CLIP's text side."""
        first = self[0]
        return first if isinstance(first, CLIPModel) else self.transformer

    @property
    def tokenizer(self) -> Any:
        return self._text_input().tokenizer

    @property
    def max_seq_length(self) -> int:
        return self._text_input().max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._text_input().max_seq_length = int(value)

    # -- the batching loop ---------------------------------------------------------------

    def run_batches(
        self,
        texts: Sequence[Any],
        batch_size: int,
        collect: Callable[[dict[str, torch.Tensor]], Any],
        *,
        show_progress_bar: bool | None = None,
        device: torch.device | None = None,
        extra_features: dict[str, Any] | None = None,
        length: Callable[[Any], int] = len,
        desc: str = "Batches",
        tokenize: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
        ragged: Callable[[list[Any]], Any] | None = None,
        stack: bool = False,
    ) -> Any:
        """Run ``texts`` through the stack in length-sorted batches; ``collect`` turns each batch's
        features into per-row results, which come back in the caller's order.

        Batching (token-length buckets, tokenization ahead in a background thread, pinned memory
        on CUDA) lives in ``sdk.encoders.feed``. ``tokenize`` replaces the first module's tokenizer
        for stacks whose input module is not a Transformer (a Router picks one per route);
        ``ragged`` is its unpadded fast path (``Transformer.tokenize_ragged``), used when it can.
        With ``stack=True`` ``collect`` returns one tensor per batch and the result is a single
        tensor in the caller's order, left on the device: no per-row Python objects and no
        device-to-host sync per batch, so a GPU can queue batch k+1 while batch k runs.
        """
        from sdk.encoders.feed import batches

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if stack and len(texts) == 1 and tokenize is None and device is None and not extra_features \
                and isinstance(texts[0], str):
            one = self._one_text_path()
            vector = one.run(texts[0]) if one is not None else None
            if vector is not None:
                with torch.inference_mode():
                    return collect({"sentence_embedding": torch.from_numpy(vector)})
        if tokenize is None and isinstance(self[0], CLIPModel):
            return self._run_by_modality(texts, batch_size, collect, stack=stack, show_progress_bar=show_progress_bar,
                                         device=device, extra_features=extra_features, desc=desc)
        device = device or self.device
        if tokenize is None:
            tokenize, ragged = self.transformer.tokenize, ragged or getattr(self.transformer, "tokenize_ragged", None)
        feed = batches(texts, batch_size, tokenize, length=length, device=device, ragged=ragged)
        if show_progress_bar:
            from tqdm.auto import tqdm

            feed = tqdm(feed, desc=desc, total=-(-len(texts) // batch_size))
        results: list[Any] = [None] * len(texts)
        parts: list[torch.Tensor] = []
        positions: list[np.ndarray] = []
        small = self.small_batch_threads if device.type == "cpu" else None

        def run(features: dict[str, Any], threads: int | None) -> Any:
            features = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                        for k, v in features.items()}
            if extra_features:
                features.update(extra_features)
            ids = features.get("input_ids")
            few = small is not None and isinstance(ids, torch.Tensor) and ids.numel() <= SMALL_BATCH_TOKENS
            with intra_op_threads(small if few else threads):
                for module in self:
                    features = module(features)
            return collect(features)

        side_by_side = self._concurrent_sessions() if device.type == "cpu" and len(texts) > batch_size else None
        done = _side_by_side(feed, run, *side_by_side) if side_by_side else \
            ((idx, run(features, None)) for idx, features in feed)
        with torch.inference_mode():
            for idx, out in done:
                if stack:
                    parts.append(out)
                    positions.append(idx)
                    continue
                for i, row in zip(idx.tolist(), out, strict=True):
                    results[i] = row
        if not stack:
            return results
        return _in_order(parts, positions) if parts else None

    def _graph_plan(self) -> tuple[Any, list[Any]]:
        """(the one-short-text path or None, the compiled graphs when every Transformer of the stack runs
        one, else []); planned once per module list (swapping a backend or a module plans again)."""
        key = (tuple(id(m) for m in self._modules.values()),
               tuple(id(getattr(m, "auto_model", None)) for m in self._modules.values()), self.small_batch_threads)
        cached = self.__dict__.get("_graph_plans")
        if cached is None or cached[0] != key:
            from sdk.encoders.backends import transformers_in
            from sdk.encoders.backends.graph import GraphModel
            from sdk.encoders.one_text import OneTextPath

            modules = list(self._modules.values())
            models = [t.auto_model for t in transformers_in(modules)]
            graphs = models if models and all(isinstance(m, GraphModel) for m in models) else []
            one = OneTextPath.build(modules, self.small_batch_threads, SMALL_BATCH_TOKENS)
            cached = self.__dict__["_graph_plans"] = (key, (one, graphs))
        return cached[1]

    def _one_text_path(self) -> Any:
        """The fast path for one short text (``sdk.encoders.one_text``) when this stack allows it, else None."""
        return self._graph_plan()[0]

    def _concurrent_sessions(self) -> tuple[list[tuple[Any, Any]], int] | None:
        """((graph, its concurrent session) for every graph of the stack, threads) when batches can run
        side by side on one CPU thread each (``GraphModel.concurrent_session``), else None."""
        graphs = self._graph_plan()[1]
        if not graphs:
            return None
        found = [(g, g.concurrent_session()) for g in graphs]
        if any(c is None for _, c in found):
            return None
        return [(g, c[0]) for g, c in found], min(c[1] for _, c in found)

    def _run_by_modality(
        self, items: Sequence[Any], batch_size: int, collect: Callable[[dict[str, torch.Tensor]], Any],
        *, stack: bool, **options: Any,
    ) -> Any:
        """``run_batches`` for a CLIP stack: texts and images in runs of their own (a batch holds one
        modality), the results put back in the caller's order."""
        clip: CLIPModel = self[0]
        image = np.fromiter((not isinstance(item, str) for item in items), dtype=bool, count=len(items))
        runs = [(np.flatnonzero(~image), {"tokenize": clip.tokenize}),
                (np.flatnonzero(image), {"tokenize": clip.pixel_values, "ragged": clip.image_rows,
                                         "length": lambda _: 0})]
        runs = [(idx, feed) for idx, feed in runs if len(idx)] or runs[:1]
        outputs = [(idx, self.run_batches([items[i] for i in idx], batch_size, collect, stack=stack, **feed, **options))
                   for idx, feed in runs]
        if len(outputs) == 1:
            return outputs[0][1]
        if not stack:
            results: list[Any] = [None] * len(items)
            for idx, rows in outputs:
                for i, row in zip(idx.tolist(), rows, strict=True):
                    results[i] = row
            return results
        return _in_order([part for _, part in outputs], [idx for idx, _ in outputs])

    # -- several processes ---------------------------------------------------------------

    def start_multi_process_pool(self, target_devices: Sequence[str] | None = None) -> dict[str, Any]:
        """Start worker processes (one per device, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``)."""
        from sdk.encoders.pool import start_pool

        return start_pool(self, target_devices)

    @staticmethod
    def stop_multi_process_pool(pool: dict[str, Any]) -> None:
        """Stop the workers of a pool from ``start_multi_process_pool``."""
        from sdk.encoders.pool import stop_pool

        stop_pool(pool)

    def encode_multi_process(
        self, sentences: Any, pool: dict[str, Any], chunk_size: int | None = None, **kwargs: Any
    ) -> Any:
        """``encode`` spread over a pool's workers in chunks; same arguments, same result, same order."""
        if not callable(getattr(self, "encode", None)):
            raise CapabilityError(f"{type(self).__name__} has no encode(); use predict(pool=...)")
        texts, single = check_texts(sentences, images=self.accepts_images)
        return self._in_pool("encode", texts, single, pool, None, chunk_size, kwargs)

    def _in_pool(
        self, method: str, items: list[Any], single: bool, pool: dict[str, Any] | None,
        devices: Sequence[str] | None, chunk_size: int | None, kwargs: dict[str, Any],
    ) -> Any:
        """``self.<method>(items, **kwargs)`` run by a pool: the caller's, or one started on
        ``devices`` for this call only (``encode(..., device=["cuda:0", "cuda:1"])``)."""
        from sdk.encoders.pool import combine, map_chunks

        own = pool is None
        if own:
            pool = self.start_multi_process_pool(devices)
        try:
            if not items:  # nothing to send; the local call gives the right empty shape
                map_chunks(pool, method, items, chunk_size, kwargs)  # still validates the pool
                return getattr(self, method)(items, **kwargs)
            out = combine(map_chunks(pool, method, items, chunk_size, kwargs))
        finally:
            if own:
                self.stop_multi_process_pool(pool)
        return out[0] if single else out

    # -- saving ----------------------------------------------------------------------------

    def _extra_config(self) -> dict[str, Any]:
        """Class-specific entries for config_sentence_transformers.json."""
        return {}

    def fingerprint(self, **settings: Any) -> str:
        """``sha256:...`` of everything that shapes this encoder's vectors (``sdk.encoders.fingerprint``).

        Collections store it; a pipeline or a sync that opens a collection built by another
        encoder is refused instead of mixing incomparable vectors."""
        from sdk.encoders.fingerprint import encoder_fingerprint

        return encoder_fingerprint(self, **settings)

    def save(self, path: str | Path) -> None:
        """Write a folder that this SDK and sentence-transformers both load."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = []
        for idx, (name, module) in enumerate(self.named_children()):
            if not isinstance(module, EncoderModule):
                raise InputError(f"module {name!r} ({type(module).__name__}) cannot be saved")
            root = idx == 0 and isinstance(module, (Transformer, CLIPModel))  # the input module, like ST
            sub = "" if root else f"{idx}_{type(module).__name__}"
            module.save(folder / sub)
            manifest.append({"idx": idx, "name": name, "path": sub, "type": module.st_type})
        with open(folder / "modules.json", "w", encoding="utf8") as fh:
            json.dump(manifest, fh, indent=2)
        config = {"model_type": self.model_type, "__version__": _versions()}
        config.update(self._extra_config())
        with open(folder / "config_sentence_transformers.json", "w", encoding="utf8") as fh:
            json.dump(config, fh, indent=2)


class VectorEncoder(ModuleEncoder):
    """A ModuleEncoder whose ``encode`` turns texts into vectors: prompts and query/document roles.

    Subclasses define ``encode(sentences, prompt_name=..., prompt=..., ...)``; ``_role_defaults``
    adds what else a role sets (SparseEncoder: the Router route of the same name).
    """

    # -- prompts ---------------------------------------------------------------------------

    def _init_prompts(
        self, config: dict[str, Any], prompts: dict[str, str] | None, default_prompt_name: str | None
    ) -> None:
        """Prompts saved with the model, overridden by the caller's; the default must be one of them."""
        self.prompts: dict[str, str] = dict(config.get("prompts") or {})
        self.prompts.update(prompts or {})
        self.default_prompt_name = default_prompt_name or config.get("default_prompt_name")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise InputError(
                f"default_prompt_name {self.default_prompt_name!r} is not among the prompts {sorted(self.prompts)}"
            )

    def _resolve_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        """An explicit ``prompt`` wins, then ``prompt_name``, then the model's default prompt."""
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            raise InputError(f"prompt_name {name!r} is not defined; this model has prompts {sorted(self.prompts)}")
        return self.prompts[name]

    # -- query and document roles ----------------------------------------------------------

    encode: Callable[..., Any]  # each subclass defines it, with prompt_name= and prompt= among its arguments

    def _role_defaults(self, role: str) -> dict[str, Any]:
        """Hook: further ``encode`` arguments a role sets unless the caller did (SparseEncoder: ``task``)."""
        return {}

    def _encode_as(self, role: str, sentences: Any, kwargs: dict[str, Any]) -> Any:
        """``encode`` with the role's first prompt the model has, unless the caller chose a prompt."""
        if "prompt_name" not in kwargs and "prompt" not in kwargs:
            name = next((p for p in ROLE_PROMPTS[role] if p in self.prompts), None)
            if name is not None:
                kwargs["prompt_name"] = name
        for key, value in self._role_defaults(role).items():
            kwargs.setdefault(key, value)
        return self.encode(sentences, **kwargs)

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Encode search queries with the model's "query" prompt, if it has one (and, on a
        SparseEncoder, the "query" route); an explicit ``prompt_name`` or ``prompt`` wins."""
        return self._encode_as("query", sentences, kwargs)

    def encode_document(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Encode documents with the model's "document" (or "passage"/"corpus") prompt, if any (and,
        on a SparseEncoder, the "document" route); an explicit ``prompt_name`` or ``prompt`` wins."""
        return self._encode_as("document", sentences, kwargs)


def _versions() -> dict[str, str]:
    import transformers

    return {"retrieval_forge": __version__, "transformers": transformers.__version__, "pytorch": torch.__version__}
