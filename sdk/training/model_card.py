"""The README.md (model card) written next to every saved model: what it is, how it was trained.

A card that says the base model, the data, the loss and the measured metrics lets someone who
finds the folder months later judge it without the training script.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelCardData", "write_model_card"]

_PIPELINE = {"DenseTrainer": "sentence-similarity", "CrossEncoderTrainer": "text-ranking",
             "SparseEncoderTrainer": "feature-extraction"}
_KIND = {"DenseTrainer": "DenseEncoder", "CrossEncoderTrainer": "CrossEncoder", "SparseEncoderTrainer": "SparseEncoder"}
#: the arguments worth printing (everything else is transformers' defaults or bookkeeping)
_ARGS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
         "learning_rate", "warmup_steps", "weight_decay", "lr_scheduler_type", "fp16", "bf16", "seed",
         "batch_sampler", "multi_dataset_batch_sampler", "prompts", "router_mapping", "learning_rate_mapping")


@dataclass
class ModelCardData:
    """What the trainer cannot know: language, license, a human name, and the datasets' ids."""

    language: str | list[str] | None = None
    license: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    train_datasets: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value
    return value


def _datasets(trainer: Any) -> list[dict[str, Any]]:
    data = trainer.train_dataset
    parts = data.items() if isinstance(data, Mapping) else [("train", data)] if data is not None else []
    return [{"name": name, "rows": len(part), "columns": list(getattr(part, "column_names", []))} for name, part in parts]


def _losses(trainer: Any) -> list[dict[str, Any]]:
    loss = trainer.loss
    items = loss.items() if isinstance(loss, Mapping) else [("train", loss)]
    out = []
    for name, item in items:
        config = item.get_config_dict() if hasattr(item, "get_config_dict") else {}
        out.append({"dataset": name, "loss": type(item).__name__, "parameters": {k: _plain(v) if not isinstance(v, (dict, list)) else v for k, v in config.items()}})
    return out


def _metrics(trainer: Any) -> dict[str, float]:
    last: dict[str, float] = {}
    for entry in trainer.state.log_history:
        for key, value in entry.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                last[key] = value
    return last


def write_model_card(folder: str | Path, trainer: Any) -> Path:
    """Write ``folder/README.md`` from the trainer's model, data, loss, arguments and metrics."""
    from sdk.core.version import __version__

    kind = type(trainer).__name__
    model = trainer.model
    card: ModelCardData = trainer.model_card_data or ModelCardData()
    base = str(getattr(model, "model_path", "") or "unknown")
    args = {name: _plain(getattr(trainer.args, name)) for name in _ARGS if hasattr(trainer.args, name)}
    datasets, losses, metrics = _datasets(trainer), _losses(trainer), _metrics(trainer)
    front = {
        "library_name": "sentence-transformers",
        "pipeline_tag": _PIPELINE.get(kind, "feature-extraction"),
        "tags": ["sentence-transformers", "retrieval-forge", _KIND.get(kind, kind), *card.tags],
        "base_model": base,
        "language": card.language,
        "license": card.license,
        "datasets": [d.get("id") for d in card.train_datasets if d.get("id")] or None,
    }
    lines = ["---"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in front.items() if v not in (None, [], "")]
    lines += ["---", "", f"# {card.model_name or f'{_KIND.get(kind, kind)} fine-tuned from {Path(base).name}'}", ""]
    lines += ["## Model", "", f"- Kind: `{_KIND.get(kind, kind)}` (loads in retrieval-forge and sentence-transformers)",
              f"- Base model: `{base}`"]
    for label, attr in (("Max sequence length", "max_seq_length"), ("Similarity", "similarity_fn_name")):
        value = getattr(model, attr, None)
        if value is not None:
            lines.append(f"- {label}: {_plain(value)}")
    lines += ["", "## Training data", "", "| dataset | rows | columns |", "|---|---|---|"]
    lines += [f"| {d['name']} | {d['rows']} | {', '.join(d['columns'])} |" for d in datasets]
    lines += ["", "## Loss", ""]
    lines += [f"- {item['dataset']}: `{item['loss']}` {json.dumps(item['parameters'], default=str)}" for item in losses]
    lines += ["", "## Hyperparameters", "", "```json", json.dumps(args, indent=2, default=str), "```", ""]
    state = trainer.state
    lines += [f"Trained {state.global_step} steps ({state.epoch or 0:.2f} epochs).", ""]
    if metrics:
        lines += ["## Evaluation (last evaluation during training)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())]
        lines.append("")
    lines += ["## Usage", "", "```python", f"from sdk.encoders import {_KIND.get(kind, 'DenseEncoder')}",
              f"model = {_KIND.get(kind, 'DenseEncoder')}('path/to/this/folder')", "```", "",
              f"Trained with retrieval-forge {__version__}.", ""]
    path = Path(folder) / "README.md"
    path.write_text("\n".join(lines), encoding="utf8")
    (Path(folder) / "training_summary.json").write_text(json.dumps(
        {"base_model": base, "datasets": datasets, "losses": losses, "arguments": args, "metrics": metrics,
         "model_card": dataclasses.asdict(card)}, indent=2, default=str), encoding="utf8")
    return path
