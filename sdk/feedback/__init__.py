"""Feedback: what each search showed, what users did with it, the labels drawn from it, and the
registry of what each collection serves.

``RetrievalPipeline(..., feedback="sqlite:///feedback.db")`` records an ``Impression`` per search
(query or its hash, ranked ids with positions and every stage's score, model fingerprints,
physical collection, timings) on a background thread; ``pipeline.feedback(search_id, doc_id,
"click")`` records a ``FeedbackEvent``. A failing or slow store never slows or breaks a search.

``export_labels(store)`` turns it into per-query training and evaluation labels (``labels.py``);
``Registry`` records candidates and the serving state pipelines follow (``registry.py``).

This package needs only ``sdk.core`` (and sqlite3; psycopg when a PostgreSQL URL is opened), so
the retrieval layer above it can use it. Training candidates and promoting them
(``sdk.learning``) sits higher up.
"""

from sdk.feedback.backends import PostgresFeedbackStore, SqliteFeedbackStore, open_feedback_store
from sdk.feedback.capture import Capture, PendingImpression
from sdk.feedback.labels import Judgement, LabelSet, QueryLabels, export_labels, propensity
from sdk.feedback.records import (
    RATING_RANGE,
    SIGNALS,
    FeedbackEvent,
    Impression,
    ShownHit,
    check_signal,
    hash_query,
    new_search_id,
)
from sdk.feedback.store import FeedbackStore

__all__ = [
    "RATING_RANGE",
    "SIGNALS",
    "Capture",
    "FeedbackEvent",
    "FeedbackStore",
    "Impression",
    "Judgement",
    "LabelSet",
    "PendingImpression",
    "PostgresFeedbackStore",
    "QueryLabels",
    "ShownHit",
    "SqliteFeedbackStore",
    "check_signal",
    "export_labels",
    "hash_query",
    "new_search_id",
    "open_feedback_store",
    "propensity",
]
