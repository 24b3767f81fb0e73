"""Batch samplers: how rows become batches, for one dataset and across several.

They yield lists of row indices (DataLoader ``batch_sampler``), reshuffle per epoch from
``seed + epoch`` (the trainer calls ``set_epoch``), so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from sdk.core.errors import InputError

__all__ = [
    "DefaultBatchSampler",
    "GroupByLabelBatchSampler",
    "NoDuplicatesBatchSampler",
    "ProportionalBatchSampler",
    "RoundRobinBatchSampler",
]


class _SeededBatchSampler(Sampler[list[int]]):
    def __init__(self, size: int, batch_size: int, drop_last: bool = False, seed: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.size, self.batch_size, self.drop_last, self.seed = size, batch_size, drop_last, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _permutation(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full if self.drop_last or not rest else full + 1


class DefaultBatchSampler(_SeededBatchSampler):
    """A shuffled permutation cut into batches."""

    def __iter__(self) -> Iterator[list[int]]:
        order = self._permutation()
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch


class NoDuplicatesBatchSampler(_SeededBatchSampler):
    """Shuffled batches in which no text value occurs twice.

    A row that would repeat a text already in the batch waits for a later batch (it is retried
    first there), so the order stays close to the shuffle and every row is used once per epoch.
    Labels are not texts and are ignored. One pass, linear in the number of rows.
    """

    def __init__(self, rows: Sequence[Sequence[Any]], batch_size: int, drop_last: bool = False, seed: int = 0):
        super().__init__(len(rows), batch_size, drop_last, seed)
        self.keys = [frozenset(hash(v) for v in row) for row in rows]

    def __iter__(self) -> Iterator[list[int]]:
        fresh = iter(self._permutation())
        waiting: deque[int] = deque()
        while True:
            batch, seen = [], set()
            for _ in range(len(waiting)):  # rows deferred earlier get the first chance
                idx = waiting.popleft()
                if len(batch) < self.batch_size and not (self.keys[idx] & seen):
                    batch.append(idx)
                    seen |= self.keys[idx]
                else:
                    waiting.append(idx)
            for idx in fresh:
                if self.keys[idx] & seen:
                    waiting.append(idx)
                    continue
                batch.append(idx)
                seen |= self.keys[idx]
                if len(batch) == self.batch_size:
                    break
            if not batch:
                return
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch


class GroupByLabelBatchSampler(_SeededBatchSampler):
    """Batches in which every label occurs at least twice (in-batch triplet mining needs pairs).

    Rows of labels seen only once are dropped; each label contributes an even number of rows.
    """

    def __init__(self, labels: Sequence[Any], batch_size: int, drop_last: bool = False, seed: int = 0):
        if batch_size < 2 or batch_size % 2:
            raise InputError(f"GROUP_BY_LABEL needs an even batch_size >= 2, got {batch_size!r}")
        by_label: dict[Any, list[int]] = defaultdict(list)
        for idx, label in enumerate(labels):
            by_label[label.item() if hasattr(label, "item") else label].append(idx)
        self.groups = [rows for rows in by_label.values() if len(rows) >= 2]
        if not self.groups:
            raise InputError("GROUP_BY_LABEL found no label with two or more rows; check the label column")
        super().__init__(sum(len(g) - len(g) % 2 for g in self.groups), batch_size, drop_last, seed)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        pairs: list[list[int]] = []
        for rows in self.groups:
            order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            pairs.extend(order[i:i + 2] for i in range(0, len(order) - 1, 2))
        pairs = [pairs[i] for i in torch.randperm(len(pairs), generator=generator).tolist()]
        per_batch = self.batch_size // 2
        for start in range(0, len(pairs), per_batch):
            batch = [idx for pair in pairs[start:start + per_batch] for idx in pair]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch


class _MultiDatasetSampler(Sampler[list[int]]):
    """Batches from several datasets concatenated (``ConcatDataset`` order); each batch from one."""

    def __init__(self, samplers: Sequence[Sampler[list[int]]], sizes: Sequence[int], seed: int = 0) -> None:
        self.samplers, self.seed, self.epoch = list(samplers), seed, 0
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for sampler in self.samplers:
            sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def _shifted(self, which: int) -> Iterator[list[int]]:
        offset = self.offsets[which]
        for batch in self.samplers[which]:
            yield [offset + i for i in batch]


class RoundRobinBatchSampler(_MultiDatasetSampler):
    """One batch of each dataset in turn, until the one with fewest batches runs out."""

    def __iter__(self) -> Iterator[list[int]]:
        streams = [self._shifted(i) for i in range(len(self.samplers))]
        for _ in range(len(self)):
            for stream in streams:
                yield next(stream)

    def __len__(self) -> int:
        return min(len(s) for s in self.samplers) * len(self.samplers)  # type: ignore[arg-type]


class ProportionalBatchSampler(_MultiDatasetSampler):
    """Every batch of every dataset, datasets interleaved in a random order by their batch counts."""

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = [i for i, s in enumerate(self.samplers) for _ in range(len(s))]  # type: ignore[arg-type]
        order = [order[j] for j in torch.randperm(len(order), generator=generator).tolist()]
        streams = [self._shifted(i) for i in range(len(self.samplers))]
        for which in order:
            yield next(streams[which])

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)  # type: ignore[arg-type]
