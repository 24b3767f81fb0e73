"""The promotion gate: a candidate replaces what is served only when it is measurably better.

Both setups are scored per query (nDCG@10) on the same held-out queries; the paired differences
are resampled (bootstrap over queries) for a confidence interval of the mean gain. A candidate is
promoted when the mean gain is at least ``margin`` AND the interval's lower bound is above zero,
so a lucky handful of queries does not promote a model and a tiny real gain is not worth a switch.
Too few queries is a refusal with that reason, never a coin flip.

Two kinds of evidence (``combine``): held-out FEEDBACK only grades documents the served setup
showed, so it sees a candidate reorder what was shown but is blind to queries the served setup
failed (their relevant document was never shown, so nobody could click it). Measured on debpkg:
a fine-tuned dense candidate +0.032 nDCG@10 on the test qrels gained only +0.008 on held-out
feedback, interval [-0.004, +0.020]. A labelled dev split sees those queries. So with a dev split
a candidate is promoted when either kind of evidence says better and the other does not say worse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from sdk.core.errors import ConfigError

__all__ = ["Gate", "GateDecision", "combine", "paired_bootstrap"]


def paired_bootstrap(current: Mapping[str, float], candidate: Mapping[str, float], *, resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``candidate - current`` over the shared queries and its percentile bootstrap interval."""
    queries = sorted(set(current) & set(candidate))
    if not queries:
        return 0.0, 0.0, 0.0
    diff = np.asarray([candidate[q] - current[q] for q in queries], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    return float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict with everything needed to explain it."""

    promote: bool
    reason: str
    current: float
    candidate: float
    delta: float
    low: float
    high: float
    queries: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """``margin``: the least mean nDCG@10 gain worth a switch; ``min_queries``: held-out queries needed."""

    margin: float = 0.005
    confidence: float = 0.95
    resamples: int = 2000
    min_queries: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"gate margin must be a non-negative number, got {self.margin!r}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"gate confidence must lie in [0.5, 1), got {self.confidence!r}")
        if self.resamples < 100 or self.min_queries < 1:
            raise ConfigError("gate resamples must be >= 100 and min_queries >= 1")

    def decide(self, current: Mapping[str, float], candidate: Mapping[str, float]) -> GateDecision:
        shared = sorted(set(current) & set(candidate))
        n = len(shared)
        cur = float(np.mean([current[q] for q in shared])) if shared else 0.0
        cand = float(np.mean([candidate[q] for q in shared])) if shared else 0.0
        delta, low, high = paired_bootstrap(current, candidate, resamples=self.resamples,
                                            confidence=self.confidence, seed=self.seed)
        pct = f"{100 * self.confidence:.0f}%"
        if n < self.min_queries:
            return GateDecision(False, f"only {n} held-out queries with labels (the gate needs {self.min_queries}); "
                                "collect more feedback", cur, cand, delta, low, high, n)
        if delta < self.margin:
            return GateDecision(False, f"nDCG@10 {cand:.4f} vs {cur:.4f}: gain {delta:+.4f} is below the margin "
                                f"{self.margin:.4f}", cur, cand, delta, low, high, n)
        if low <= 0:
            return GateDecision(False, f"nDCG@10 {cand:.4f} vs {cur:.4f}: gain {delta:+.4f} but its {pct} interval "
                                f"[{low:+.4f}, {high:+.4f}] includes no gain", cur, cand, delta, low, high, n)
        return GateDecision(True, f"nDCG@10 {cand:.4f} vs {cur:.4f}: gain {delta:+.4f}, {pct} interval "
                            f"[{low:+.4f}, {high:+.4f}] on {n} queries", cur, cand, delta, low, high, n)


def combine(feedback: GateDecision, dev: GateDecision, margin: float) -> GateDecision:
    """One verdict from the held-out feedback's and a labelled dev split's (see the module docstring).

    Promote when one says "better" (its own promote rule) and the other does not say "worse": the
    dev split's mean loss is under ``margin``, or the feedback's interval still reaches a gain (its
    upper bound is above zero, which is all feedback can say about a setup that shows other
    documents). The numbers reported are those of the evidence that decided."""
    if feedback.promote:
        if dev.delta < -margin:
            return GateDecision(False, f"better on feedback ({feedback.reason}) but worse on the labelled dev split: "
                                f"{dev.reason}", feedback.current, feedback.candidate, feedback.delta, feedback.low,
                                feedback.high, feedback.queries)
        return feedback
    if dev.promote:
        if feedback.high <= 0:
            return GateDecision(False, f"better on the labelled dev split ({dev.reason}) but worse on held-out "
                                f"feedback: {feedback.reason}", dev.current, dev.candidate, dev.delta, dev.low,
                                dev.high, dev.queries)
        return GateDecision(True, f"labelled dev split: {dev.reason}; held-out feedback shows no loss "
                            f"(gain {feedback.delta:+.4f}, interval [{feedback.low:+.4f}, {feedback.high:+.4f}] on "
                            f"{feedback.queries} queries)", dev.current, dev.candidate, dev.delta, dev.low, dev.high,
                            dev.queries)
    return GateDecision(False, f"held-out feedback: {feedback.reason}; labelled dev split: {dev.reason}",
                        feedback.current, feedback.candidate, feedback.delta, feedback.low, feedback.high,
                        feedback.queries)
