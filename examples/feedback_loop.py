"""The feedback loop in miniature: capture what users use, turn it into labels, learn the fusion.

    python examples/feedback_loop.py

Simulated users ask one question per FAQ entry (its first sentence), see the top 5 and click the
entry that answers it. ``export_labels`` turns the impressions and clicks into per-query labels
(position-bias corrected, newest 20 % held out); ``Learner.learn(["fusion"])`` fits the hybrid's
fusion on the training queries and promotes it only when the gate on the held-out ones says it is
better. In production the pipeline follows promotions by itself; ``sdk learn`` is the CLI form.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from sdk import DenseEncoder, RetrievalPipeline, SparseEncoder
from sdk.feedback import export_labels
from sdk.learning import Learner

try:  # run as a script or imported by the tests
    from rag_quickstart import load_sample
except ImportError:  # pragma: no cover
    from examples.rag_quickstart import load_sample


def main() -> dict[str, object]:
    rng = random.Random(0)
    docs = load_sample()
    with tempfile.TemporaryDirectory() as tmp:
        feedback = f"sqlite:///{Path(tmp) / 'feedback.db'}"
        pipeline = RetrievalPipeline(DenseEncoder(), SparseEncoder(), store=f"qdrant+local:{tmp}/kb",
                                     collection="faq", feedback=feedback, limit=5)
        try:
            pipeline.add_documents(docs)
            for doc in docs:  # one simulated user per FAQ entry
                question = doc.text.split(". ")[0][:200]
                result = pipeline.search(question)
                for position, hit in enumerate(result, start=1):
                    if hit.id == doc.id and rng.random() < 0.9 / position ** 0.5:
                        pipeline.feedback(result.search_id, hit.id, "click")
            pipeline.feedback_store.flush()
            labels = export_labels(pipeline.feedback_store, collection="faq")
            print(f"labels: {len(labels.train)} training queries, {len(labels.eval)} held out")
            learner = Learner(pipeline.adapter, "faq", pipeline.feedback_store, dense=pipeline.dense_encoder,
                              sparse=pipeline.sparse_encoder, artifacts=Path(tmp) / "candidates")
            try:
                report = learner.learn(["fusion"], labels=labels)
            finally:
                learner.close()
            for step in report.steps:
                print(f"{step.kind}: {step.decision} ({step.reason})")
        finally:
            pipeline.close()
    return {"labels": len(labels), "decisions": [s.decision for s in report.steps]}


if __name__ == "__main__":
    main()
