"""The model registry: every candidate the feedback loop built, and what each collection serves.

Two tables beside the feedback (same database, same prefix, so one URL configures both):

- ``<prefix>_candidates``: one row per candidate (``fusion``, ``reranker``, ``dense``, ``sparse``)
  with the hash of the labels it learned from, its base model, its settings, the gate's metrics,
  the decision (``pending``, ``promoted``, ``refused``, ``rolled_back``) with the reason, the
  artifact (a model folder) and the serving state it would apply.
- ``<prefix>_serving``: an append-only history per logical collection. Each row is the whole
  serving state (``ServingState``: fusion, legs, reranker, dense and sparse models, physical
  collection) after a promotion or a rollback, with the version it replaced, so a rollback walks
  back one step at a time and nothing is ever overwritten.

Pipelines built with this feedback store read the newest serving row of their collection when they
start and poll its version (one indexed single-row query every few seconds, on a background thread)
to switch without a restart (``sdk.retrieval.pipeline``).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sdk.core.errors import InputError
from sdk.feedback.store import FeedbackStore

__all__ = ["KINDS", "Candidate", "Registry", "ServingState"]

KINDS = ("fusion", "reranker", "dense", "sparse")
DECISIONS = ("pending", "promoted", "refused", "rolled_back")

INSERT_CANDIDATE = (
    "INSERT INTO {candidates} (candidate_id, collection, kind, created_at, base, data_hash, config, metrics, "
    "decision, reason, artifact, state, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_CANDIDATES = ("SELECT candidate_id, collection, kind, created_at, base, data_hash, config, metrics, "
                     "decision, reason, artifact, state, decided_at FROM {candidates}")
DECIDE = "UPDATE {candidates} SET decision = ?, reason = ?, metrics = ?, decided_at = ? WHERE candidate_id = ?"
LATEST = ("SELECT version, created_at, action, candidate_id, state, previous FROM {serving} WHERE collection = ? "
          "ORDER BY version DESC LIMIT 1")
ONE = ("SELECT version, created_at, action, candidate_id, state, previous FROM {serving} WHERE collection = ? "
       "AND version = ?")
HISTORY = ("SELECT version, created_at, action, candidate_id, state, previous FROM {serving} WHERE collection = ? "
           "ORDER BY version")
VERSION = "SELECT MAX(version) FROM {serving} WHERE collection = ?"
INSERT_SERVING = ("INSERT INTO {serving} (collection, version, created_at, action, candidate_id, state, previous) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class ServingState:
    """What a collection serves beyond the pipeline's own settings; ``None`` means "as configured".

    ``fusion`` is ``{"method", "k", "weights"}``; ``legs`` the legs to query (a fitted fusion may
    keep one leg only); ``reranker``, ``dense`` and ``sparse`` are model folders; ``physical`` the
    collection to query (the version an encoder was promoted into, which its vectors live in).
    ``version`` is the registry row (0: nothing promoted yet).
    """

    fusion: Mapping[str, Any] | None = None
    legs: tuple[str, ...] | None = None
    reranker: str | None = None
    dense: str | None = None
    sparse: str | None = None
    physical: str | None = None
    version: int = 0
    candidate_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"fusion": dict(self.fusion) if self.fusion is not None else None,
                "legs": list(self.legs) if self.legs is not None else None, "reranker": self.reranker,
                "dense": self.dense, "sparse": self.sparse, "physical": self.physical}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, version: int = 0, candidate_id: str | None = None) -> ServingState:
        legs = data.get("legs")
        return cls(data.get("fusion"), tuple(legs) if legs is not None else None, data.get("reranker"),
                   data.get("dense"), data.get("sparse"), data.get("physical"), version, candidate_id)

    def merged(self, change: Mapping[str, Any]) -> ServingState:
        """This state with the keys of ``change`` replaced (what promoting a candidate does)."""
        unknown = set(change) - set(self.to_dict())
        if unknown:
            raise InputError(f"unknown serving setting(s) {sorted(unknown)}; known: {sorted(self.to_dict())}")
        return ServingState.from_dict({**self.to_dict(), **change})


@dataclass(frozen=True)
class Candidate:
    """One registry row (see the module docstring)."""

    candidate_id: str
    collection: str
    kind: str
    created_at: float
    base: str | None
    data_hash: str | None
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]
    decision: str
    reason: str
    artifact: str | None
    change: Mapping[str, Any] = field(default_factory=dict)
    decided_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"candidate_id": self.candidate_id, "collection": self.collection, "kind": self.kind,
                "created_at": self.created_at, "base": self.base, "data_hash": self.data_hash,
                "config": dict(self.config), "metrics": dict(self.metrics), "decision": self.decision,
                "reason": self.reason, "artifact": self.artifact, "change": dict(self.change),
                "decided_at": self.decided_at}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


class Registry:
    """Candidates and serving history in a ``FeedbackStore``'s database (synchronous; raises
    ``AdapterError`` when the database fails, unlike the store's request-path ``submit``)."""

    def __init__(self, store: FeedbackStore) -> None:
        if not isinstance(store, FeedbackStore):
            raise InputError(f"Registry needs a FeedbackStore (sdk.feedback.open_feedback_store), got {store!r}")
        self.store = store

    # ---- candidates -------------------------------------------------------------------------
    def add(self, collection: str, kind: str, *, change: Mapping[str, Any], base: str | None = None,
            data_hash: str | None = None, config: Mapping[str, Any] | None = None, artifact: str | None = None,
            metrics: Mapping[str, Any] | None = None, decision: str = "pending", reason: str = "") -> Candidate:
        """Record a new candidate; ``change`` is the part of ``ServingState`` it would set."""
        if kind not in KINDS:
            raise InputError(f"candidate kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self._check_decision(decision)
        ServingState().merged(change)  # refuses unknown keys before anything is written
        cand = Candidate(f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}",
                         collection, kind, time.time(), base, data_hash, dict(config or {}), dict(metrics or {}),
                         decision, reason, artifact, dict(change), None)
        with self.store._transaction() as cur:
            cur.execute(self.store._render(INSERT_CANDIDATE), (
                cand.candidate_id, collection, kind, cand.created_at, base, data_hash, _dumps(cand.config),
                _dumps(cand.metrics), decision, reason, artifact, _dumps(cand.change), None))
        return cand

    def decide(self, candidate_id: str, decision: str, reason: str,
               metrics: Mapping[str, Any] | None = None) -> Candidate:
        """Record the gate's (or an operator's) decision on a candidate."""
        self._check_decision(decision)
        cand = self.candidate(candidate_id)
        merged = {**cand.metrics, **(metrics or {})}
        with self.store._transaction() as cur:
            cur.execute(self.store._render(DECIDE), (decision, reason, _dumps(merged), time.time(), candidate_id))
        return self.candidate(candidate_id)

    def candidate(self, candidate_id: str) -> Candidate:
        found = self._candidates(" WHERE candidate_id = ?", (candidate_id,))
        if not found:
            raise InputError(f"no candidate {candidate_id!r} in the registry {self.store.where}; "
                             "`sdk learn --list` shows them")
        return found[0]

    def candidates(self, collection: str | None = None) -> list[Candidate]:
        """Every candidate (of one collection), oldest first."""
        if collection is None:
            return self._candidates(" ORDER BY created_at, candidate_id", ())
        return self._candidates(" WHERE collection = ? ORDER BY created_at, candidate_id", (collection,))

    def _candidates(self, tail: str, params: tuple[Any, ...]) -> list[Candidate]:
        with self.store._transaction() as cur:
            cur.execute(self.store._render(SELECT_CANDIDATES + tail), params)
            rows = cur.fetchall()
        return [Candidate(r[0], r[1], r[2], float(r[3]), r[4], r[5], json.loads(r[6]), json.loads(r[7]), r[8],
                          r[9], r[10], json.loads(r[11]), None if r[12] is None else float(r[12])) for r in rows]

    @staticmethod
    def _check_decision(decision: str) -> None:
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")

    # ---- serving state ----------------------------------------------------------------------
    def version(self, collection: str) -> int:
        """The newest serving version of ``collection`` (0 when nothing was ever promoted): the poll."""
        with self.store._transaction() as cur:
            cur.execute(self.store._render(VERSION), (collection,))
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def serving(self, collection: str) -> ServingState:
        """What ``collection`` serves now (an empty state when nothing was promoted)."""
        with self.store._transaction() as cur:
            cur.execute(self.store._render(LATEST), (collection,))
            row = cur.fetchone()
        return self._state(row) if row else ServingState()

    def history(self, collection: str) -> list[dict[str, Any]]:
        """Every serving row of ``collection``, oldest first (version, time, action, candidate, state)."""
        with self.store._transaction() as cur:
            cur.execute(self.store._render(HISTORY), (collection,))
            rows = cur.fetchall()
        return [{"version": int(r[0]), "created_at": float(r[1]), "action": r[2], "candidate_id": r[3],
                 "state": json.loads(r[4]), "previous": r[5]} for r in rows]

    @staticmethod
    def _state(row: tuple[Any, ...]) -> ServingState:
        return ServingState.from_dict(json.loads(row[4]), version=int(row[0]), candidate_id=row[3])

    def promote(self, candidate_id: str, reason: str = "promoted") -> ServingState:
        """Make the candidate's change part of what its collection serves (a new serving row)."""
        cand = self.candidate(candidate_id)
        current = self.serving(cand.collection)
        state = current.merged(cand.change)
        new = self._append(cand.collection, "promote", candidate_id, state, previous=current.version)
        self.decide(candidate_id, "promoted", reason)
        return new

    def rollback(self, collection: str) -> tuple[ServingState, ServingState]:
        """Serve what was served before the current state again; returns (now, undone).

        Each row remembers the version it replaced (0: the pipeline's own settings), so successive
        rollbacks walk back through the promotions until nothing is left to undo."""
        with self.store._transaction() as cur:
            cur.execute(self.store._render(LATEST), (collection,))
            latest = cur.fetchone()
            if latest is None or latest[5] is None:
                raise InputError(f"{collection!r} has nothing to roll back: no promotion is left to undo "
                                 f"in {self.store.where}")
            previous = None
            if int(latest[5]) > 0:
                cur.execute(self.store._render(ONE), (collection, int(latest[5])))
                previous = cur.fetchone()
        undone = self._state(latest)
        back = self._state(previous) if previous is not None else ServingState()
        before = None if previous is None else previous[5]
        now = self._append(collection, "rollback", back.candidate_id, back, previous=before)
        if undone.candidate_id and latest[2] == "promote":
            self.decide(undone.candidate_id, "rolled_back", f"rolled back at serving version {now.version}")
        return now, undone

    def _append(self, collection: str, action: str, candidate_id: str | None, state: ServingState,
                previous: int | None) -> ServingState:
        with self.store._transaction() as cur:
            cur.execute(self.store._render(VERSION), (collection,))
            row = cur.fetchone()
            version = (int(row[0]) if row and row[0] is not None else 0) + 1
            cur.execute(self.store._render(INSERT_SERVING), (collection, version, time.time(), action, candidate_id,
                                                             _dumps(state.to_dict()), previous))
        return replace(state, version=version, candidate_id=candidate_id)
