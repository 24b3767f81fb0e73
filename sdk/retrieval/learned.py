"""What a pipeline serves, as one immutable snapshot, and the thread that follows promotions.

A search reads ``pipeline._serving`` once and uses that snapshot for every stage (encoders, legs,
fusion, reranker, the collection it queries), so a promotion that lands mid-search never mixes a
new encoder with an old collection. ``LearnedSettings`` polls the registry's serving version of the
collection (``sdk.feedback.registry``) on a daemon thread; when it changes it loads the promoted
models there, off the request path, builds the next snapshot and swaps it in with one assignment.
A failed refresh is logged and retried at the next poll; the current snapshot keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdk.core.capabilities import Capabilities
from sdk.core.types import Fusion
from sdk.feedback.registry import Registry, ServingState

__all__ = ["LearnedSettings", "ModelCache", "Serving"]

logger = logging.getLogger("sdk.retrieval")


@dataclass(frozen=True)
class Serving:
    """Everything one search uses; replaced whole, never mutated."""

    dense: Any
    sparse: Any
    reranker: Any
    fusion: Fusion
    legs: tuple[str, ...]
    fusion_mode: str
    capabilities: Capabilities
    target: str
    version: int = 0
    candidate_id: str | None = None

    @property
    def text_leg(self) -> bool:
        return "text" in self.legs


class ModelCache:
    """Promoted models by folder, loaded once per pipeline (a rollback reuses the loaded one)."""

    def __init__(self, device: str | None) -> None:
        self.device = device
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def load(self, kind: str, folder: str) -> Any:
        key = (kind, folder)
        with self._lock:
            if key in self._models:
                return self._models[key]
        if kind == "dense":
            from sdk.encoders.dense import DenseEncoder as cls
        elif kind == "sparse":
            from sdk.encoders.sparse import SparseEncoder as cls  # type: ignore[assignment]
        else:
            from sdk.encoders.cross_encoder import CrossEncoder as cls  # type: ignore[assignment]
        model = cls(folder, device=self.device)
        with self._lock:
            return self._models.setdefault(key, model)


class LearnedSettings:
    """Polls ``registry.version(collection)`` every ``refresh_seconds`` and swaps snapshots via ``apply``."""

    def __init__(self, registry: Registry, collection: str, apply: Callable[[ServingState], None],
                 refresh_seconds: float) -> None:
        self.registry, self.collection, self.apply = registry, collection, apply
        self.refresh_seconds = refresh_seconds
        self.version = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_now(self) -> ServingState:
        """Read and apply the current serving state (raises: used at construction and by ``refresh``)."""
        state = self.registry.serving(self.collection)
        if state.version != self.version:
            self.apply(state)
            self.version = state.version
        return state

    def refresh(self) -> bool:
        """One poll: apply a newer serving state if there is one; ``True`` when it switched. Never raises."""
        if self.registry.store.closed:  # the feedback store was closed under us: nothing left to follow
            self._stop.set()
            return False
        try:
            if self.registry.version(self.collection) == self.version:
                return False
            before = self.version
            self.load_now()
            if self.version != before:
                logger.info("collection %r now serves registry version %d", self.collection, self.version)
            return self.version != before
        except Exception:  # noqa: BLE001 - keep serving the current snapshot; try again at the next poll
            logger.exception("could not apply the serving state of %r; still serving version %d",
                             self.collection, self.version)
            return False

    def start(self) -> None:
        if self.refresh_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"sdk-learned-{self.collection}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)
