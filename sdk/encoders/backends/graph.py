"""What the compiled-graph backends (ONNX Runtime, OpenVINO) share: the stand-in model and file bookkeeping.

A ``GraphModel`` stands in for the transformers model *inside* a ``Transformer`` module: it is
called with the same keyword inputs and returns an output whose ``[0]`` / ``.logits`` /
``.last_hidden_state`` is the same tensor, so tokenization, pooling, SPLADE and classification
code never learn which runtime ran. Each backend only says how a graph file is opened and run.

Exported files carry a sidecar (``sdk_export.json`` beside them) recording the fingerprint of
the torch weights each file came from, so a fine-tuned model saved into the same folder is
re-exported instead of silently reusing a stale graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdk.core.errors import InputError
from sdk.encoders.weights import is_weightless

__all__ = ["EXPORTER", "SIDECAR", "GraphModel", "GraphOutput", "cpu_source", "current", "eager_attention",
           "export_folder", "file_digest", "input_names", "publish", "read_sidecar", "record", "weights_fingerprint"]

SIDECAR = "sdk_export.json"
#: what our export writes into a graph file; a file an older export made is made again. 2: attention
#: exported from transformers' eager implementation (SDPA's export left ~150 shape and NaN-guard nodes
#: that no runtime fuses: int8 batches ran ~20% slower on ONNX Runtime and OpenVINO)
EXPORTER = 2
#: output names, ours first, then those optimum's exports (the hub's onnx/ and openvino/ folders) use
OUTPUT_NAMES = ("output", "last_hidden_state", "token_embeddings", "logits")


def weights_fingerprint(model: nn.Module) -> str:
    """Hash of every parameter and buffer: identifies the weights an exported graph came from."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_digest(*paths: Path) -> str:
    """Identifies shipped graph files (what a converted or quantized copy came from) without torch weights."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "onnx-" + digest.hexdigest()


def input_names(transformer: Any) -> tuple[str, ...]:
    """The token inputs a transformer's graph takes, in the order the export gives them."""
    return tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in transformer._forward_keys)


def cpu_source(model: nn.Module) -> nn.Module:
    """The torch model a graph stand-in keeps beside it: on CPU in eval mode (a weightless skeleton as is)."""
    return model if is_weightless(model) else model.to("cpu").eval()


# -- files ---------------------------------------------------------------------------------------


def publish(tmp: str | Path, target: Path) -> None:
    """Move a finished temp file into place with normal permissions (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def read_sidecar(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SIDECAR).read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record(folder: Path, name: str, fingerprint: str, **info: Any) -> None:
    """Note in the folder's sidecar which weights ``name`` came from (and how it was made)."""
    data = read_sidecar(folder)
    data[name] = {"source_fingerprint": fingerprint, **info}
    tmp = folder / f".{SIDECAR}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf8")
    os.replace(tmp, folder / SIDECAR)


def _writable(folder: Path) -> bool:
    probe = folder if folder.exists() else folder.parent
    return probe.is_dir() and os.access(probe, os.W_OK)


def export_folder(model: nn.Module, export_dir: str | Path | None, fingerprint: str, subdir: str) -> Path:
    """Where exported files go: ``export_dir``, else ``<model folder>/<subdir>``, else a user cache."""
    import logging

    if export_dir is not None:
        return Path(export_dir).expanduser()
    source = Path(str(getattr(model, "name_or_path", "") or ""))
    if str(source) not in ("", ".") and source.is_dir():
        folder = source / subdir
        if _writable(folder):
            return folder
        logging.getLogger(__name__).warning("model folder %s is read-only; %s files go to the user cache",
                                            source, subdir)
    cache = Path(os.environ.get("SDK_CACHE_DIR", Path.home() / ".cache" / "retrieval-forge")).expanduser()
    return cache / subdir / fingerprint


def current(info: Mapping[str, Any], fingerprint: str) -> bool:
    """Whether our sidecar record ``info`` vouches for a file made from the weights ``fingerprint`` by this
    export (``EXPORTER``; a record without one predates it). A file without our record (shipped with the
    model, or placed there by the user) is taken as it is."""
    recorded = info.get("source_fingerprint")
    return recorded is None or (recorded == fingerprint and info.get("exporter", 1) == EXPORTER)


def stale(path: Path, model: nn.Module) -> bool:
    """A found file is stale only when our own sidecar says it came from other weights or an older export."""
    if is_weightless(model):
        return False  # nothing to compare against: the shipped graph is the model
    info = read_sidecar(path.parent).get(path.name, {})
    return info.get("source_fingerprint") is not None and not current(info, weights_fingerprint(model))


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Export a transformers model through its eager attention (see ``EXPORTER``), then restore its own."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = hasattr(model, "set_attn_implementation") and previous not in (None, "eager")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(previous)


# -- the stand-in model --------------------------------------------------------------------------


class GraphOutput(tuple):
    """What transformers models return, reduced to the one tensor the modules read."""

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self[0]

    @property
    def logits(self) -> torch.Tensor:
        return self[0]


class GraphModel(nn.Module):
    """Runs a compiled graph file behind a transformers model's call signature.

    Subclasses open the runtime's session lazily (``_open(threads)``: sets ``_inputs`` and
    ``_output``) and run one feed on a session (``_run``). The torch model is kept (unregistered,
    on CPU) so ``save`` still writes the full-precision weights beside the graph, and a pool
    worker can re-export.

    Threads follow torch's per-thread setting at call time, as the torch backend does: the
    encoders lower it to one thread for a query-sized batch (``SMALL_BATCH_TOKENS``), so such a
    feed runs on a second, single-threaded session, opened on first use. A runtime's thread pool
    is fixed when its session opens, and a 2-thread pool's hand-offs cost more than a short
    query's whole forward pass (and a spinning worker takes the core the database needs next).
    """

    #: the folder name the backend's files live under inside a model folder
    subdir = "graph"
    backend = "graph"

    def __init__(self, path: Path, torch_model: nn.Module, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        self.__dict__["torch_model"] = torch_model  # not a submodule: .to() and state_dict skip it
        self.config = torch_model.config
        self.name_or_path = getattr(torch_model, "name_or_path", "")
        self._session: Any = None
        self._session_threads = 0
        self._narrow: dict[int, Any] = {}  # thread count -> a session with fewer threads than the main one
        self._streams: Any = None  # the concurrent_session, opened on first use
        self._inputs: list[str] = []
        self._output = ""
        self.session  # noqa: B018  (fail now, not at the first encode, on a broken file)

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session_threads = self.threads or torch.get_num_threads()
            self._session = self._open(self._session_threads)
        return self._session

    def session_for_call(self) -> Any:
        """The main session, or one with fewer threads when the caller's torch setting asks for fewer."""
        return self.session_with(torch.get_num_threads())

    def session_with(self, threads: int | None) -> Any:
        """The main session, or one opened with ``threads`` threads when that is fewer (None: the main one)."""
        main = self.session
        if threads is None or threads >= self._session_threads or not self.narrow_sessions:
            return main
        session = self._narrow.get(threads)
        if session is None:
            session = self._narrow[threads] = self._open(threads)
        return session

    #: whether a call asking for fewer threads gets a session of its own (off where the device has no
    #: CPU thread pool to size)
    narrow_sessions = True

    def concurrent_session(self) -> tuple[Any, int] | None:
        """A session ``n`` threads may run batches on at once, one CPU thread each, and ``n``; None where
        that does not apply (one thread in all, or no CPU thread pool to split).

        Why: a team of threads on one batch meets at a barrier after every operator, so each waits for
        the slowest (and for the core, when anything else runs); separate batches on separate threads
        never wait. Measured with int8 MiniLM on 2 cores: +20-30% texts/s on ONNX Runtime and OpenVINO."""
        self.session  # noqa: B018
        n = self._session_threads
        if n < 2 or not self.narrow_sessions:
            return None
        if self._streams is None:
            self._streams = self._open_streams(n)
        return self._streams, n

    def _open_streams(self, n: int) -> Any:
        """A session ``n`` callers can run at once, each on one thread (default: the one-thread session;
        a runtime whose session runs one call at a time overrides this)."""
        return self.session_with(1)

    @contextlib.contextmanager
    def using(self, session: Any) -> Iterator[None]:
        """Run this thread's calls on ``session`` (a ``concurrent_session``) instead of picking one."""
        local = self.__dict__.setdefault("_pinned", threading.local())
        previous = getattr(local, "session", None)
        local.session = session
        try:
            yield
        finally:
            local.session = previous

    def _session_in_use(self) -> Any:
        local = self.__dict__.get("_pinned")
        pinned = getattr(local, "session", None) if local is not None else None
        return pinned if pinned is not None else self.session_for_call()

    def _open(self, threads: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, **inputs: Any) -> GraphOutput:
        self.session  # noqa: B018  (opens it, and learns the graph's input names)
        feed: dict[str, np.ndarray] = {}
        for name in self._inputs:
            value = input_ids if name == "input_ids" else inputs.get(name)
            if value is None:
                if name != "token_type_ids":
                    raise InputError(f"the model graph {self.path.name} needs input {name!r}, "
                                     "which the tokenizer did not give")
                value = torch.zeros_like(input_ids)
            feed[name] = value.detach().cpu().numpy().astype(np.int64, copy=False)
        return GraphOutput((torch.from_numpy(self._run(self._session_in_use(), feed)).to(input_ids.device),))

    def get_output_embeddings(self) -> None:
        return None

    def files(self) -> list[Path]:
        """The files the graph in use consists of (``save`` copies them)."""
        return [self.path]

    def shipped_companions(self) -> Iterator[Path]:
        """Graphs of a weightless model that ``save`` keeps beside the one in use (its fp32 source)."""
        return iter(())

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """Torch weights as usual, plus the graph in use under ``<subdir>/``.

        A model loaded from graph files alone has no torch weights to write: its config and the
        graphs (the one in use and the fp32 one beside it) are what it saves.
        """
        torch_model = self.__dict__["torch_model"]
        weightless = is_weightless(torch_model)
        if weightless:
            torch_model.config.save_pretrained(folder)
        else:
            torch_model.save_pretrained(folder, **kwargs)
        target = Path(folder) / self.subdir
        target.mkdir(parents=True, exist_ok=True)
        files = self.files() + (list(self.shipped_companions()) if weightless else [])
        for file in files:
            if file.resolve() == (target / file.name).resolve():
                continue
            shutil.copyfile(file, target / file.name)
            info = dict(read_sidecar(file.parent).get(file.name) or {})
            if "source_fingerprint" in info:
                record(target, file.name, info.pop("source_fingerprint"), **info)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # sessions do not pickle; workers open their own
        state["_narrow"] = {}
        state["_streams"] = None
        state.pop("_pinned", None)  # thread-local: each process pins its own
        return state

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}"
