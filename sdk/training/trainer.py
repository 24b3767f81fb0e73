"""Trainers for the three encoder kinds, built on ``transformers.Trainer``.

The training loop, mixed precision, gradient accumulation, checkpoint/resume, eval and save
strategies and multi-GPU/multi-node data parallel (``torchrun`` / ``accelerate launch``) are
transformers' and accelerate's. This module supplies only what differs for encoders: batches of
texts (``sdk.training.collator``), batch samplers (``sdk.training.samplers``), losses that read
those batches, evaluators run at each evaluation, and saving as an encoder folder that this SDK
and sentence-transformers both load.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import EvalLoopOutput

from sdk.core.errors import InputError
from sdk.encoders.cross_encoder import CrossEncoder
from sdk.encoders.dense import DenseEncoder
from sdk.encoders.modules.router import Router
from sdk.encoders.sparse import SparseEncoder
from sdk.training.args import (
    BatchSamplers,
    CrossEncoderTrainingArguments,
    DenseTrainingArguments,
    EncoderTrainingArguments,
    MultiDatasetBatchSamplers,
    SparseEncoderTrainingArguments,
)
from sdk.training.collator import TrainingCollator, label_column, text_columns
from sdk.training.samplers import (
    DefaultBatchSampler,
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
    ProportionalBatchSampler,
    RoundRobinBatchSampler,
)

__all__ = ["CrossEncoderTrainer", "DenseTrainer", "EncoderTrainer", "SentenceTransformerTrainer", "SparseEncoderTrainer"]

logger = logging.getLogger(__name__)
_RESERVED = ("dataset_name", "return_loss")


class _Named(Dataset):
    """Rows of one dataset of a multi-dataset run, tagged with the dataset's name."""

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset, self.name = dataset, name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "dataset_name": self.name}


class _ZeroLossGradients(TrainerCallback):
    """transformers zeroes only the model's gradients after a step; parameters a loss owns (TSDAE's
    decoder, a projection) would otherwise add up their gradients across every step."""

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if optimizer is not None:
            optimizer.zero_grad()

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if optimizer is not None:
            optimizer.zero_grad()


def _columns(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:
        raise InputError(
            f"training data must be a datasets.Dataset (or a dict / DatasetDict of them), got {type(dataset).__name__}; "
            "build one with datasets.Dataset.from_dict({...}) or sdk.training.beir_pairs(...)"
        )
    return list(names)


class EncoderTrainer(Trainer):
    """``transformers.Trainer`` for encoders: pass ``loss`` (one, or one per dataset) and optionally
    an ``evaluator`` (``sdk.evaluation``) that runs at every evaluation."""

    #: "embed": losses get tokenized columns; "pairs": losses get raw texts (cross-encoders)
    collator_mode = "embed"
    model_class: type[nn.Module] = nn.Module
    args_class: type[EncoderTrainingArguments] = EncoderTrainingArguments

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        loss: nn.Module | Mapping[str, nn.Module] | Callable[[nn.Module], nn.Module] | None = None,
        evaluator: Callable[..., Any] | None = None,
        data_collator: Callable[..., Any] | None = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
        model_card_data: Any = None,
    ) -> None:
        if model is None or not isinstance(model, self.model_class):
            raise InputError(f"{type(self).__name__} trains a {self.model_class.__name__}; got {type(model).__name__}")
        args = self._coerce_args(args)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            self._check_dataset(dataset, name)
        self.evaluator = evaluator
        collator = data_collator or self._make_collator(model, args)
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            # transformers insists on an eval dataset for eval_strategy != "no"; an evaluator suffices here
            train_dataset=train_dataset,
            eval_dataset=eval_dataset if eval_dataset is not None or evaluator is None else "evaluator-only",
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if self.eval_dataset == "evaluator-only":
            self.eval_dataset = None
        self.add_callback(_ZeroLossGradients)
        self.loss = self._prepare_loss(loss, model, train_dataset)
        self.model_card_data = model_card_data
        self._runner_set: set[int] = set()
        self._components: dict[str, list[float]] = {}

    # -- setup ---------------------------------------------------------------------------------

    def _coerce_args(self, args: TrainingArguments | None) -> EncoderTrainingArguments:
        if args is None:
            return self.args_class(output_dir="trainer_output")
        if isinstance(args, EncoderTrainingArguments):
            return args
        if isinstance(args, TrainingArguments):  # plain transformers arguments: keep every setting
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
            return self.args_class(**values)
        raise InputError(f"args must be {self.args_class.__name__}, got {type(args).__name__}")

    @staticmethod
    def _check_dataset(dataset: Any, what: str) -> None:
        if dataset is None:
            return
        for name, part in dataset.items() if isinstance(dataset, Mapping) else [(None, dataset)]:
            columns = _columns(part)
            if clash := [c for c in columns if c in _RESERVED]:
                raise InputError(f"{what}{f'[{name!r}]' if name else ''} uses reserved column names {clash}; rename them")
            if not text_columns(columns):
                raise InputError(f"{what}{f'[{name!r}]' if name else ''} has no text columns (columns: {columns})")

    def _make_collator(self, model: nn.Module, args: EncoderTrainingArguments) -> TrainingCollator:
        if self.collator_mode == "pairs":
            return TrainingCollator(mode="pairs", prompts=args.prompts)
        first = model[0]  # type: ignore[index]
        router = first if isinstance(first, Router) else None

        def tokenize(texts: list[str], route: str | None) -> dict[str, torch.Tensor]:
            if router is not None:
                return router.tokenize(texts, task=route)
            return first.tokenize(texts)

        prompt_length = getattr(model, "_prompt_length", None)
        return TrainingCollator(
            mode="embed", tokenize=tokenize, prompt_length=prompt_length, prompts=args.prompts,
            router_mapping=args.router_mapping,
            default_routes=("query", "document") if router is not None and not args.router_mapping else None,
        )

    def default_loss(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def _prepare_loss(self, loss: Any, model: nn.Module, train_dataset: Any) -> nn.Module | dict[str, nn.Module]:
        def build(item: Any) -> nn.Module:
            if item is None:
                item = self.default_loss(model)
            elif not isinstance(item, nn.Module) and callable(item):
                item = item(model)  # a loss class: sentence-transformers accepts these too
            if not isinstance(item, nn.Module):
                raise InputError(f"loss must be a loss module (e.g. MultipleNegativesRankingLoss(model)), got {item!r}")
            return item.to(self.args.device)

        if isinstance(loss, Mapping):
            built = {name: build(item) for name, item in loss.items()}
            if isinstance(train_dataset, Mapping) and (missing := set(train_dataset) - set(built)):
                raise InputError(f"no loss for train datasets {sorted(missing)}; give loss={{name: loss}} for each")
            return built
        return build(loss)

    # -- batches -------------------------------------------------------------------------------

    def _batch_sampler(self, dataset: Any, batch_size: int, drop_last: bool, seed: int) -> Any:
        kind = self.args.batch_sampler
        columns = _columns(dataset)
        if kind == BatchSamplers.NO_DUPLICATES:
            texts = text_columns(columns)
            rows = list(zip(*[dataset[c] for c in texts], strict=True))
            rows = [[v if isinstance(v, str) else str(v) for v in row] for row in rows]
            return NoDuplicatesBatchSampler(rows, batch_size, drop_last, seed)
        if kind == BatchSamplers.GROUP_BY_LABEL:
            label = label_column(columns)
            if label is None:
                raise InputError("batch_sampler=GROUP_BY_LABEL needs a 'label' column")
            return GroupByLabelBatchSampler(dataset[label], batch_size, drop_last, seed)
        return DefaultBatchSampler(len(dataset), batch_size, drop_last, seed)

    def _loader(self, dataset: Any, batch_size: int, train: bool) -> DataLoader:
        args = self.args
        if isinstance(dataset, Mapping):
            names = list(dataset)
            parts = [_Named(dataset[n], n) for n in names]
            if train:
                samplers = [self._batch_sampler(dataset[n], batch_size, args.dataloader_drop_last, args.seed)
                            for n in names]
                sizes = [len(dataset[n]) for n in names]
                multi = (RoundRobinBatchSampler if args.multi_dataset_batch_sampler == MultiDatasetBatchSamplers.ROUND_ROBIN
                         else ProportionalBatchSampler)
                sampler: Any = multi(samplers, sizes, seed=args.seed)
            else:  # evaluation goes one named dataset at a time (see evaluate)
                raise InputError("evaluate one dataset at a time")
            data: Any = ConcatDataset(parts)
        else:
            data = dataset
            sampler = (self._batch_sampler(dataset, batch_size, args.dataloader_drop_last, args.seed) if train
                       else BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False))
        loader = DataLoader(
            data, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(), persistent_workers=args.dataloader_persistent_workers and
            args.dataloader_num_workers > 0, prefetch_factor=args.dataloader_prefetch_factor,
        )
        # uneven last batches across processes are fine for training; evaluation needs them even
        self.accelerator.even_batches = not train
        return self.accelerator.prepare(loader)

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise InputError(f"{type(self).__name__}.train() needs a train_dataset")
        return self._loader(self.train_dataset, self._train_batch_size, train=True)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        if isinstance(eval_dataset, str):
            name, dataset = eval_dataset, self.eval_dataset[eval_dataset]
            return self._loader(_Named(dataset, name), self.args.eval_batch_size, train=False)
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            if self.evaluator is not None:
                return DataLoader([])  # nothing to compute a loss on; the evaluator still runs
            raise InputError("evaluation needs an eval_dataset or an evaluator")
        return self._loader(dataset, self.args.eval_batch_size, train=False)

    # -- loss ------------------------------------------------------------------------------------

    def _loss_for(self, dataset_name: str | None) -> nn.Module:
        if isinstance(self.loss, dict):
            if dataset_name not in self.loss:
                raise InputError(f"no loss for dataset {dataset_name!r}; losses exist for {sorted(self.loss)}")
            return self.loss[dataset_name]
        return self.loss

    def _use_runner(self, loss_fn: nn.Module, model: nn.Module) -> None:
        """Losses call a DDP/compiled wrapper when the trainer wrapped the model (once per loss)."""
        key = id(loss_fn)
        if key in self._runner_set:
            return
        self._runner_set.add(key)
        if model is self.model:
            return
        for module in loss_fn.modules():
            if hasattr(module, "runner"):
                object.__setattr__(module, "runner", model)  # not a submodule: no double registration

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        loss_fn = self._loss_for(inputs.get("dataset_name"))
        self._use_runner(loss_fn, model)
        batch = inputs["features"] if "features" in inputs else inputs["texts"]
        value = loss_fn(batch, inputs.get("label"))
        if isinstance(value, Mapping):  # several components (e.g. SpladeLoss): log each, train on the sum
            if model.training:
                for name, part in value.items():
                    self._components.setdefault(name, []).append(float(part.detach()))
            value = torch.stack([torch.as_tensor(v) for v in value.values()]).sum()
        return (value, {}) if return_outputs else value

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._components and "loss" in logs:
            for name, values in self._components.items():
                logs[name] = round(sum(values) / len(values), 6)
            self._components = {}
        super().log(logs, start_time)

    # -- evaluation ------------------------------------------------------------------------------

    def evaluation_loop(self, dataloader: DataLoader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.evaluator is None:
            return output
        if isinstance(self.eval_dataset, Mapping) and metric_key_prefix.startswith("eval_"):
            # several eval datasets: run the evaluator once, with the first, under plain "eval"
            if metric_key_prefix[5:] != next(iter(self.eval_dataset)):
                return output
            metric_key_prefix = "eval"
        metrics: dict[str, Any] = {}
        if self.is_world_process_zero():
            out = Path(self.args.output_dir) / "eval"
            out.mkdir(parents=True, exist_ok=True)
            was_training = self.model.training
            self.model.eval()
            try:
                result = self.evaluator(self.model, output_path=str(out), epoch=self.state.epoch or -1,
                                        steps=self.state.global_step)
            finally:
                self.model.train(was_training)
            metrics = result if isinstance(result, dict) else {"evaluator": float(result)}
        from accelerate.utils import broadcast_object_list

        metrics = broadcast_object_list([metrics])[0] if self.args.world_size > 1 else metrics
        for key, value in metrics.items():
            name = key if key.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{key}"
            output.metrics[name] = value
        return output

    # -- optimizer -------------------------------------------------------------------------------

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """transformers' optimizer, with per-parameter learning rates from ``learning_rate_mapping``;
        parameters a loss owns (e.g. MSELoss' projection) are trained too."""
        if self.optimizer is not None:
            return self.optimizer
        mapping = self.args.learning_rate_mapping
        if not mapping:
            optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        else:
            optimizer = self._mapped_optimizer(self.model if model is None else model, mapping)
        target = self.model if model is None else model
        own = {id(p) for p in target.parameters()}
        losses = self.loss.values() if isinstance(self.loss, dict) else [self.loss]
        extra = {id(p): p for loss in losses for p in loss.parameters() if p.requires_grad and id(p) not in own}
        if extra:
            optimizer.add_param_group({"params": list(extra.values()), "weight_decay": 0.0})
        self.optimizer = optimizer
        return optimizer

    def _mapped_optimizer(self, target: nn.Module, mapping: dict[str, float]) -> torch.optim.Optimizer:
        decay = set(self.get_decay_parameter_names(target))
        patterns = [(re.compile(p), float(lr)) for p, lr in mapping.items()]
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in target.named_parameters():
            if not param.requires_grad:
                continue
            lr = next((lr for pattern, lr in patterns if pattern.search(name)), self.args.learning_rate)
            groups.setdefault((lr, self.args.weight_decay if name in decay else 0.0), []).append(param)
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
        param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
        return optimizer_cls(param_groups, **kwargs)

    # -- training, saving, resuming --------------------------------------------------------------

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            self.model.eval()  # encode()/predict() after training must not run with dropout

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        folder = Path(output_dir or self.args.output_dir)
        if not self.args.should_save:
            return
        self.model.save(folder)  # type: ignore[operator]
        torch.save(self.args, folder / "training_args.bin")
        from sdk.training.model_card import write_model_card

        write_model_card(folder, self)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        target = self.model if model is None else model
        folder = Path(resume_from_checkpoint)
        loaded = type(target)(str(folder), device=str(target.device))  # type: ignore[call-arg]
        missing = target.load_state_dict(loaded.state_dict(), strict=True)
        logger.info("resumed weights from %s (%s)", folder, missing)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best:
            self._load_from_checkpoint(best)


class DenseTrainer(EncoderTrainer):
    """Trains a ``DenseEncoder`` (default loss: MultipleNegativesRankingLoss, in-batch negatives)."""

    model_class = DenseEncoder
    args_class = DenseTrainingArguments

    def default_loss(self, model: nn.Module) -> nn.Module:
        from sdk.training.losses.dense import MultipleNegativesRankingLoss

        return MultipleNegativesRankingLoss(model)


class CrossEncoderTrainer(EncoderTrainer):
    """Trains a ``CrossEncoder`` (default loss: BinaryCrossEntropyLoss on (query, passage, label))."""

    collator_mode = "pairs"
    model_class = CrossEncoder
    args_class = CrossEncoderTrainingArguments

    def default_loss(self, model: nn.Module) -> nn.Module:
        from sdk.training.losses.cross import BinaryCrossEntropyLoss

        return BinaryCrossEntropyLoss(model)


class SparseEncoderTrainer(EncoderTrainer):
    """Trains a ``SparseEncoder`` (default loss: SpladeLoss around SparseMultipleNegativesRankingLoss)."""

    model_class = SparseEncoder
    args_class = SparseEncoderTrainingArguments

    def default_loss(self, model: nn.Module) -> nn.Module:
        from sdk.training.losses.sparse import SparseMultipleNegativesRankingLoss, SpladeLoss

        return SpladeLoss(model, SparseMultipleNegativesRankingLoss(model),
                          query_regularizer_weight=5e-5, document_regularizer_weight=3e-5)


#: sentence-transformers' name, for recipes copied from its documentation
SentenceTransformerTrainer = DenseTrainer
