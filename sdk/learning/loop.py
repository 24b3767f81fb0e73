"""``learn``: feedback -> labels -> candidates, cheapest first -> gate -> promotion; plus ``promote`` and ``rollback``.

Steps, each measured against what the collection serves at that moment (so a later step builds on
an earlier promotion of the same run):

1. ``fusion``: fit the hybrid's fusion (``sdk.learning.fusion``); promotion is a registry row.
2. ``reranker``: fine-tune the cross-encoder; promotion is a registry row: pipelines following the
   registry load the new model on their refresh thread and swap it in (no re-index).
3. ``dense`` / ``sparse``: fine-tune the encoder; ``sdk sync`` builds a STAGED version of the
   collection with it (the alias keeps serving the old one), the gate queries that version, and
   promotion records the serving row (pipelines switch encoder and collection together) and then
   lets sync switch the alias for everyone else. A refused candidate's staged version is dropped.

Every candidate lands in the registry with the labels' data hash, its base, settings, the gate's
numbers and the decision with its reason. ``dry_run`` builds and gates but promotes nothing
(candidates stay ``pending``; ``promote`` can apply one later).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk.core.errors import ConfigError, InputError
from sdk.core.registry import connect
from sdk.core.store import VectorStore
from sdk.feedback import FeedbackStore, LabelSet, export_labels, open_feedback_store
from sdk.feedback.registry import Candidate, Registry, ServingState
from sdk.learning.evaluate import condense, ndcg_per_query, rank_queries
from sdk.learning.fusion import fit_fusion
from sdk.learning.gate import Gate, GateDecision, combine
from sdk.learning.train import document_texts, reranker_rows, train_candidate, triplet_rows
from sdk.retrieval.pipeline import RetrievalPipeline

__all__ = ["LearnReport", "Learner", "StepResult", "candidates"]

logger = logging.getLogger("sdk.learning")
STEPS = ("fusion", "reranker", "dense", "sparse")


@dataclass
class StepResult:
    kind: str
    candidate_id: str | None
    decision: str  # promoted | refused | pending | skipped
    reason: str
    gate: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class LearnReport:
    collection: str
    data_hash: str
    labels: dict[str, int]
    steps: list[StepResult]
    dry_run: bool
    serving_version: int

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "data_hash": self.data_hash, "labels": self.labels,
                "dry_run": self.dry_run, "serving_version": self.serving_version,
                "steps": [s.__dict__ for s in self.steps]}

    def summary(self) -> str:
        lines = [f"learned from {self.labels.get('train_queries', 0)} train / {self.labels.get('eval_queries', 0)} "
                 f"held-out queries (labels {self.data_hash[:12]}){' [dry run]' if self.dry_run else ''}"]
        for s in self.steps:
            lines.append(f"  {s.kind:<8} {s.decision:<9} {s.candidate_id or '-'}: {s.reason}")
        return "\n".join(lines)


def _judged(groups: Sequence[Any]) -> dict[str, set[str]]:
    """Per query, the documents feedback says anything about: shown, chosen or rejected."""
    return {g.query_id: {*g.shown, *(j.doc_id for j in g.positives), *(j.doc_id for j in g.negatives)}
            for g in groups}


def _model_path(model: Any) -> str | None:
    path = getattr(model, "model_path", None)
    return str(path) if path is not None else None


class Learner:
    """The loop for one collection of one store (see the module docstring).

    ``store`` is an adapter or URL; ``feedback`` the feedback store (or its path/URL) holding the
    impressions, events and the registry; ``dense`` / ``sparse`` / ``reranker`` the encoders the
    collection is served with (objects, folders; default: what ``sdk sync`` recorded, else the
    packaged models); ``reranker_base`` a model to start a reranker from when none is served yet.
    ``ledger`` is the sync ledger (needed for encoder steps with a store given as an object).
    The gate scores feedback on condensed lists (``sdk.learning.evaluate.condense``): each setup ranks
    ``eval_depth`` hits and only the judged ones among them (shown before, chosen or rejected) count,
    so a candidate is graded on how it orders what users judged. The depth matters: at 10, a
    candidate that brings unseen documents into its top 10 pushes judged ones out of the list and
    loses for it (a candidate +0.032 on debpkg's test qrels scored +0.002 on feedback at depth 10,
    +0.008 at 100). ``dev`` (a BEIR folder and split) adds labelled evidence: ``gate.combine``.
    ``settle_seconds``: how long an encoder promotion waits between recording the new serving state
    and moving the alias, so pipelines polling the registry (every 5 s by default) switch first.
    """

    def __init__(self, store: VectorStore | str, collection: str, feedback: FeedbackStore | str, *,
                 dense: Any = None, sparse: Any = None, reranker: Any = None, reranker_base: str | None = None,
                 ledger: Any = None, artifacts: str | os.PathLike[str] | None = None, gate: Gate | None = None,
                 device: str | None = None, dev: tuple[str | os.PathLike[str], str] | None = None,
                 label_options: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None,
                 rerank_top: int = 30, settle_seconds: float = 10.0, eval_depth: int = 100) -> None:
        self.store_url = store if isinstance(store, str) else None
        self.adapter = connect(store) if isinstance(store, str) else store
        self._owns_adapter = isinstance(store, str)
        self.feedback = open_feedback_store(feedback)
        self._owns_feedback = self.feedback is not feedback
        self.collection, self.device = collection, device
        self._owns_ledger = False
        self.book = self._open_ledger(ledger)
        self.registry = Registry(self.feedback)
        self.gate = gate or Gate()
        self.dev = dev
        self.label_options = dict(label_options or {})
        self.train_options = dict(train_options or {})
        self.reranker_base = reranker_base
        self.settle_seconds = float(settle_seconds)
        self.eval_depth = eval_depth
        self.artifacts = Path(artifacts or Path(os.environ.get("SDK_LEARN_DIR", "~/.local/share/retrieval-forge/"
                                                                              "candidates")).expanduser())
        dense, sparse, reranker = self._encoders(dense, sparse, reranker)
        self.pipeline = RetrievalPipeline(dense, sparse, store=self.adapter, collection=collection, reranker=reranker,
                                          rerank_top=rerank_top, limit=10, learned=False, device=device)

    # ---- setup ------------------------------------------------------------------------------
    def _open_ledger(self, ledger: Any) -> Any:
        """The sync ledger of the collection (``None`` when it was not built by sync), opened once: the
        store is never connected a second time (an embedded store may allow one client only)."""
        from sdk.sync.ledger import Ledger, ledger_dir, ledger_key

        if isinstance(ledger, Ledger):
            return ledger
        if ledger is not None:
            key = ledger_key(self.store_url, self.collection) if self.store_url else \
                f"{self.collection}-{self.adapter.capabilities.name}"
            self._owns_ledger = True
            return Ledger.open(ledger, key=key)
        if self.store_url is None:
            return None
        key = ledger_key(self.store_url, self.collection)
        if not (ledger_dir() / f"{key}.sqlite").is_file():
            return None
        self._owns_ledger = True
        return Ledger.open(None, key=key)

    def _sync_state(self) -> dict[str, Any]:
        if self.book is None:
            return {}
        return {"live": self.book.get("live"), "sources": self.book.get("sources") or {}}

    def _encoders(self, dense: Any, sparse: Any, reranker: Any) -> tuple[Any, Any, Any]:
        from sdk.sync import load_encoders

        models = ((self._sync_state().get("live") or {}).get("models")) or {}
        spec = self.adapter.describe(self.collection)
        dense = dense if dense is not None else models.get("dense")
        sparse = sparse if sparse is not None else (models.get("sparse") if spec.sparse else False)
        dense, sparse, _ = load_encoders(self.adapter, dense, sparse if spec.sparse else False, self.device)
        if isinstance(reranker, (str, os.PathLike)):
            from sdk.encoders.cross_encoder import CrossEncoder

            reranker = CrossEncoder(str(reranker), device=self.device)
        return dense, sparse, reranker

    def close(self) -> None:
        self.pipeline.close()
        if self._owns_ledger:
            self.book.close()
        if self._owns_feedback:
            self.feedback.close()
        if self._owns_adapter:
            self.adapter.close()

    def __enter__(self) -> Learner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- measuring --------------------------------------------------------------------------
    def labels(self) -> LabelSet:
        self.feedback.flush()
        labels = export_labels(self.feedback, collection=self.collection, **self.label_options)
        if not labels.eval:
            raise InputError(f"no held-out queries with positive feedback for {self.collection!r}; collect more "
                             "feedback (or lower eval_fraction / split_time)")
        return labels

    def _scores(self, serving: Any, queries: Mapping[str, str], qrels: Mapping[str, Any],
                judged: Mapping[str, set[str]] | None = None) -> dict[str, float]:
        """Feedback (``judged`` given) grades hits on condensed lists; a labelled split grades documents."""
        if judged is not None:
            run = rank_queries(self.pipeline, queries, serving, limit=self.eval_depth)
            return ndcg_per_query(condense(run, judged), qrels)
        return ndcg_per_query(rank_queries(self.pipeline, queries, serving, limit=20, documents=True), qrels)

    def _dev_set(self) -> Any:
        """The labelled dev split, read once per learner (every gated step scores on it)."""
        if self.__dict__.get("_dev_data") is None:
            from sdk.evaluation.beir import load_beir

            self._dev_data = load_beir(Path(self.dev[0]), self.dev[1])
        return self._dev_data

    def _judge(self, labels: LabelSet, current: Any, candidate: Any) -> tuple[GateDecision, dict[str, Any]]:
        queries, qrels = labels.queries("eval"), labels.qrels("eval")
        judged = _judged(labels.eval)
        decision = self.gate.decide(self._scores(current, queries, qrels, judged),
                                    self._scores(candidate, queries, qrels, judged))
        detail: dict[str, Any] = {"feedback": decision.to_dict()}
        if self.dev is not None:
            data = self._dev_set()
            dev = self.gate.decide(self._scores(current, data.queries, data.qrels),
                                   self._scores(candidate, data.queries, data.qrels))
            detail["dev"] = dev.to_dict()
            decision = combine(decision, dev, self.gate.margin)
        return decision, detail

    # ---- the loop ---------------------------------------------------------------------------
    def learn(self, steps: Sequence[str] = ("fusion", "reranker", "dense"), *, dry_run: bool = False,
              labels: LabelSet | None = None) -> LearnReport:
        """Run ``steps`` cheapest first; ``labels`` replaces the export from the feedback store (e.g. a
        file written by ``sdk feedback export`` and curated, read with ``LabelSet.from_jsonl``)."""
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise ConfigError(f"unknown learning step(s) {unknown}; choose from {', '.join(STEPS)}")
        if labels is None:
            labels = self.labels()
        elif not labels.eval:
            raise InputError("the labels have no held-out (eval) queries; the gate needs them")
        results = []
        for step in sorted(steps, key=STEPS.index):  # cheapest first
            try:
                results.append(getattr(self, f"_learn_{step}" if step != "sparse" else "_learn_dense")(
                    labels, dry_run, *(("sparse",) if step == "sparse" else ())))
            except InputError as exc:  # not enough data for this step: say so, go on with the next
                results.append(StepResult(step, None, "skipped", str(exc)))
        return LearnReport(self.collection, labels.data_hash(), dict(labels.stats), results, dry_run,
                           self.registry.version(self.collection))

    def _record(self, kind: str, labels: LabelSet, change: dict[str, Any], decision: GateDecision,
                detail: dict[str, Any], dry_run: bool, *, base: str | None = None, artifact: str | None = None,
                config: Mapping[str, Any] | None = None) -> StepResult:
        metrics = {**detail, "labels": labels.stats}
        verdict = "pending" if dry_run else ("promoted" if decision.promote else "refused")
        cand = self.registry.add(self.collection, kind, change=change, base=base, data_hash=labels.data_hash(),
                                 config=config, artifact=artifact, metrics=metrics,
                                 decision="pending" if verdict == "promoted" else verdict, reason=decision.reason)
        if verdict == "promoted":
            self._promote(cand)
        return StepResult(kind, cand.candidate_id, verdict, decision.reason, decision.to_dict(),
                          {k: v for k, v in detail.items() if k != "feedback"})

    def _current(self) -> tuple[ServingState, Any]:
        state = self.registry.serving(self.collection)
        return state, self.pipeline.serving_for(state)

    def _learn_fusion(self, labels: LabelSet, dry_run: bool) -> StepResult:
        state, current = self._current()
        # every leg, with what is served for each (a promoted encoder and the collection built with it)
        every_leg = self.pipeline.serving_for(state.merged({"legs": None}))
        fit = fit_fusion(self.pipeline, labels.queries("train"), labels.qrels("train"),
                         current={"legs": list(state.legs) if state.legs else None, "fusion": state.fusion},
                         judged=_judged(labels.train), serving=every_leg)
        if fit is None:
            return StepResult("fusion", None, "skipped", "one leg only: nothing to fuse")
        same = fit.change.get("legs") == list(current.legs) and (
            len(current.legs) == 1 or fit.change.get("fusion") == {"method": current.fusion.method.value,
                                                                   "k": current.fusion.k,
                                                                   "weights": dict(current.fusion.weights)})
        if same:
            return StepResult("fusion", None, "skipped", f"the served fusion is already the best fit "
                              f"(train nDCG@10 {fit.train_ndcg:.4f})", detail={"fit": fit.table[:5]})
        candidate = self.pipeline.serving_for(state.merged(fit.change))
        decision, detail = self._judge(labels, current, candidate)
        detail["fit"] = fit.table[:8]
        return self._record("fusion", labels, fit.change, decision, detail, dry_run,
                            config={"train_ndcg": fit.train_ndcg, "current_train_ndcg": fit.current_ndcg,
                                    "tried": fit.tried})

    def _learn_reranker(self, labels: LabelSet, dry_run: bool) -> StepResult:
        state, current = self._current()
        base = state.reranker or _model_path(self.pipeline._base.reranker) or self.reranker_base
        if base is None:
            return StepResult("reranker", None, "skipped", "no reranker is served and no reranker_base was given")
        texts = document_texts(self.adapter, current.target, labels.train)
        rows = reranker_rows(labels.train, texts)
        folder = self.artifacts / self.collection / f"reranker-{labels.data_hash()[:10]}-{len(self.registry.candidates())}"
        options = {"epochs": 1.0, "batch_size": 16, "learning_rate": 2e-5, **self.train_options}
        train_candidate("cross", base, rows, folder, device=self.device, **options)
        candidate = self.pipeline.serving_for(state.merged({"reranker": str(folder)}))
        decision, detail = self._judge(labels, current, candidate)
        return self._record("reranker", labels, {"reranker": str(folder)}, decision, detail, dry_run, base=base,
                            artifact=str(folder), config={**options, "rows": len(rows["label"])})

    def _learn_dense(self, labels: LabelSet, dry_run: bool, kind: str = "dense") -> StepResult:
        from sdk.sync import discard_staged, sync

        sync_state = self._sync_state()
        sources = {k: v for k, v in (sync_state.get("sources") or {}).items() if v is not None}
        if not sources:
            return StepResult(kind, None, "skipped", "encoder promotion re-indexes through sdk sync: this collection "
                              "has no sync ledger with a re-openable source")
        state, current = self._current()
        encoder = self.pipeline._base.dense if kind == "dense" else self.pipeline._base.sparse
        base = getattr(state, kind) or _model_path(encoder)
        if encoder is None or base is None:
            return StepResult(kind, None, "skipped", f"no {kind} encoder is served")
        texts = document_texts(self.adapter, current.target, labels.train)
        rows = triplet_rows(labels.train, texts)
        folder = self.artifacts / self.collection / f"{kind}-{labels.data_hash()[:10]}-{len(self.registry.candidates())}"
        options = {"epochs": 1.0, "batch_size": 16, "learning_rate": 2e-5, **self.train_options}
        train_candidate(kind, base, rows, folder, device=self.device, **options)
        base_models = self.pipeline._base  # every configured leg, even one a fitted fusion does not query
        other = {"sparse": state.sparse or _model_path(base_models.sparse) or False} if kind == "dense" else \
            {"dense": state.dense or _model_path(base_models.dense)}
        models = {kind: str(folder), **other}
        staged = None
        for spec in sources.values():
            report = sync(spec, self.adapter, self.collection, ledger=self.book, stage=True,
                          device=self.device, progress=False, **models)
            staged = report.staged or staged
        if staged is None:
            raise InputError("sync staged no version for the candidate encoder")
        change = {kind: str(folder), "physical": staged}
        candidate = self.pipeline.serving_for(state.merged(change))
        decision, detail = self._judge(labels, current, candidate)
        result = self._record(kind, labels, change, decision, detail, dry_run, base=base, artifact=str(folder),
                              config={**options, "rows": len(rows["anchor"]), "sources": sources, "models": models})
        if result.decision == "refused":
            discard_staged(self.adapter, self.collection, ledger=self.book)
        return result

    # ---- promotion and rollback -------------------------------------------------------------
    def promote(self, candidate_id: str, *, force: bool = False) -> ServingState:
        """Serve a recorded candidate (a refused one only with ``force``)."""
        cand = self.registry.candidate(candidate_id)
        if cand.collection != self.collection:
            raise InputError(f"candidate {candidate_id} belongs to {cand.collection!r}, not {self.collection!r}")
        if cand.decision == "refused" and not force:
            raise InputError(f"the gate refused {candidate_id} ({cand.reason}); pass force to promote it anyway")
        if cand.decision == "promoted":
            raise InputError(f"{candidate_id} is already promoted")
        return self._promote(cand)

    def _promote(self, cand: Candidate) -> ServingState:
        if cand.kind not in ("dense", "sparse"):
            return self.registry.promote(cand.candidate_id, reason=cand.reason or "promoted")
        # An encoder: (1) bring the staged version up to date with the source, (2) record the serving
        # row, so pipelines following the registry switch to the new encoder AND its version together,
        # (3) give them ``settle_seconds`` to do so, (4) let sync move the alias for everyone else.
        from sdk.sync import sync

        models = dict(cand.config.get("models") or {})
        sources = list((cand.config.get("sources") or {}).values())
        for spec in sources:
            sync(spec, self.adapter, self.collection, ledger=self.book, device=self.device,
                 progress=False, stage=True, **models)
        state = self.registry.promote(cand.candidate_id, reason=cand.reason or "promoted")
        time.sleep(self.settle_seconds)
        for spec in sources:
            sync(spec, self.adapter, self.collection, ledger=self.book, device=self.device,
                 progress=False, **models)
        return state

    def rollback(self) -> tuple[ServingState, ServingState]:
        """Serve what was served before the last promotion. For an encoder the alias goes back first
        (pipelines following the registry still query the promoted version by name meanwhile), then
        the serving row, which returns them to the old encoder and the alias together."""
        current = self.registry.serving(self.collection)
        history = self.registry.history(self.collection)
        previous = next((h for h in history if history and h["version"] == history[-1]["previous"]), None)
        before = ServingState.from_dict(previous["state"]) if previous else ServingState()
        if current.physical != before.physical:
            from sdk.sync import rollback as sync_rollback

            sync_rollback(self.adapter, self.collection, ledger=self.book)
        return self.registry.rollback(self.collection)


def candidates(feedback: FeedbackStore | str, collection: str | None = None) -> list[Candidate]:
    """The registry's candidates (of one collection), oldest first."""
    store = open_feedback_store(feedback)
    try:
        return Registry(store).candidates(collection)
    finally:
        if store is not feedback:
            store.close()
