"""The evaluator contract the trainer and ``sdk eval`` share, and a combinator for several evaluators.

An evaluator is called with a model and returns ``{metric key: float}``; every key carries the
evaluator's ``name`` as a prefix (``"dev_cosine_ndcg@10"``) so several evaluators can report into
one log without clashing. ``primary_metric`` names the full key that model selection reads and
``greater_is_better`` says which way it improves. The call signature and the key names follow
sentence-transformers' evaluators, so trainers and model cards written for one read the other.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sdk.core.errors import InputError

__all__ = ["Evaluator", "SequentialEvaluator", "evaluation_mode"]


@contextlib.contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """Dropout off while evaluating, and the model's train/eval state restored afterwards, so an
    evaluation in the middle of training neither sees dropout noise nor leaves training without it."""
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was_training and hasattr(model, "train"):
            model.train(True)


class Evaluator:
    """Base class: subclasses implement ``__call__`` and set ``primary_metric`` (a full, prefixed key)."""

    def __init__(self, name: str = "", write_csv: bool = True) -> None:
        if not isinstance(name, str):
            raise InputError(f"name must be a string, got {type(name).__name__}")
        self.name = name
        self.write_csv = bool(write_csv)
        self.greater_is_better = True
        self.primary_metric: str | None = None

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; ``epoch``/``steps`` of -1 mean "not during training" (they only label CSV rows)."""
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------

    def metric_key(self, metric: str) -> str:
        """``metric`` with this evaluator's name in front (unchanged when the name is empty)."""
        return f"{self.name}_{metric}" if self.name else metric

    def prefixed(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Every key through ``metric_key`` and every value a plain Python float (JSON- and logger-safe)."""
        return {self.metric_key(k): float(v) for k, v in metrics.items()}

    def append_csv(self, output_path: str | None, file_name: str, header: Sequence[str],
                   row: Sequence[Any]) -> None:
        """One row per call in ``output_path/file_name``, the header written when the file is new."""
        if output_path is None or not self.write_csv:
            return
        os.makedirs(output_path, exist_ok=True)
        path = os.path.join(output_path, file_name)
        is_new = not os.path.isfile(path)
        with open(path, "a" if not is_new else "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if is_new:
                writer.writerow(list(header))
            writer.writerow(list(row))

    @staticmethod
    def describe_call(epoch: int, steps: int) -> str:
        """Log phrase for the call: " after epoch 1", " in epoch 1 after 50 steps" or "" (not in training)."""
        if epoch == -1:
            return ""
        return f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"

    @property
    def description(self) -> str:
        """Human label for model cards: ``InformationRetrievalEvaluator`` -> ``Information Retrieval``."""
        label = type(self).__name__.removesuffix("Evaluator")
        return re.sub(r"([a-z])([A-Z])", r"\1 \2", label)

    def get_config_dict(self) -> dict[str, Any]:
        """Settings worth recording next to the metrics (model card); empty by default."""
        return {}


class SequentialEvaluator(Evaluator):
    """Runs several evaluators in turn and merges their metric dictionaries.

    ``main_score_function`` gets the list of each evaluator's primary value (in order) and returns
    the combined score, reported as ``sequential_score`` and used as this evaluator's primary
    metric; the default keeps the last evaluator's value. An evaluator that returns a bare float
    is reported as ``evaluator_<index>``.
    """

    def __init__(self, evaluators: Iterable[Any],
                 main_score_function: Callable[[list[float]], float] = lambda scores: scores[-1]) -> None:
        super().__init__(name="", write_csv=False)
        self.evaluators = list(evaluators)
        if not callable(main_score_function):
            raise InputError("main_score_function must be callable, e.g. lambda scores: sum(scores) / len(scores)")
        self.main_score_function = main_score_function
        self.primary_metric = "sequential_score"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        merged: dict[str, float] = {}
        primaries: list[float] = []
        for index, evaluator in enumerate(self.evaluators):
            result = evaluator(model, output_path, epoch, steps)
            if not isinstance(result, Mapping):
                primaries.append(float(result))
                result = {f"evaluator_{index}": float(result)}
            else:
                key = getattr(evaluator, "primary_metric", None)
                primaries.append(result[key] if key is not None else next(iter(result.values())))
            merged.update(result)
        merged["sequential_score"] = float(self.main_score_function(primaries)) if primaries else 0.0
        return merged
