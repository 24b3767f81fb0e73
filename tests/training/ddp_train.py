"""Run by tests/training/test_distributed.py under ``torchrun --nproc_per_node 2`` (CPU, gloo):
each rank trains the same tiny model on its shard of the batches and writes a hash of its weights."""

from __future__ import annotations

import hashlib
import os
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    from datasets import Dataset

    from sdk.encoders.dense import DenseEncoder
    from sdk.training import DenseTrainer, DenseTrainingArguments
    from sdk.training.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

    folder, out, loss_name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    rank = int(os.environ.get("RANK", "0"))
    words = "python package install debian database vector search query document model".split()
    rng = random.Random(0)
    anchors = [" ".join(rng.choices(words, k=4)) + f" {i}" for i in range(64)]
    data = Dataset.from_dict({"anchor": anchors, "positive": [a + " data" for a in anchors]})
    model = DenseEncoder(folder, device="cpu")
    loss = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=3, gather_across_devices=True)
            if loss_name == "cached" else MultipleNegativesRankingLoss(model, gather_across_devices=True))
    args = DenseTrainingArguments(output_dir=str(out / "ckpt"), max_steps=4, per_device_train_batch_size=8,
                                  learning_rate=1e-3, report_to=[], disable_tqdm=True, save_strategy="no",
                                  ddp_backend="gloo", use_cpu=True, seed=1)
    trainer = DenseTrainer(model=model, args=args, train_dataset=data, loss=loss)
    result = trainer.train()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    (out / f"rank{rank}.txt").write_text(f"{digest} {trainer.args.world_size} {result.global_step}")
    trainer.save_model(str(out / "model"))


if __name__ == "__main__":
    main()
    torch.distributed.destroy_process_group() if torch.distributed.is_initialized() else None
