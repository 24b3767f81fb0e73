"""Learning from feedback: fitted fusion, fine-tuned reranker and encoders, each gated, promoted
without downtime and reversible (issue 15).

    from sdk.learning import Learner

    with Learner("qdrant+local:./data", "docs", "sqlite:///feedback.db") as learner:
        report = learner.learn()          # fusion, reranker, dense: cheapest first, each gated
        print(report.summary())
        learner.rollback()                # serve what was served before the last promotion

This package sits above sync, training and retrieval (it uses all three); the registry and the
serving state it writes live in ``sdk.feedback.registry``, which pipelines read.
"""

from sdk.learning.gate import Gate, GateDecision, combine, paired_bootstrap
from sdk.learning.loop import Learner, LearnReport, StepResult, candidates

__all__ = ["Gate", "GateDecision", "LearnReport", "Learner", "StepResult", "candidates", "combine", "paired_bootstrap"]
