"""Knowledge distillation: a 3-layer student learns all-MiniLM-L6-v2's embeddings.

The teacher's embeddings are computed once in ``datasets.map`` and stored as the label column;
``MSELoss`` pulls the student's embeddings of the same sentences towards them. The student
starts as the teacher with layers removed (layer reduction), so it is twice as fast to run.

    python examples/distill_knowledge.py
"""

from __future__ import annotations

import json
import tempfile
from importlib import resources

import torch


def sentences() -> list[str]:
    """Sentences from the bundled sample corpus (Python FAQ, Debian package descriptions)."""
    text = resources.files("sdk.data").joinpath("sample_corpus.jsonl").read_text(encoding="utf8")
    out = []
    for line in text.splitlines():
        doc = json.loads(line)
        out.extend(s.strip() + "." for s in doc["text"].split(". ") if len(s.split()) > 4)
    return out[:192]


def mse(student, teacher_vectors, texts) -> float:
    return float(((student.encode(texts, convert_to_tensor=True) - teacher_vectors) ** 2).mean())


def main(steps: int = 16) -> dict[str, float]:
    from datasets import Dataset

    from sdk.encoders.dense import DenseEncoder
    from sdk.training import DenseTrainer, DenseTrainingArguments
    from sdk.training.losses.dense import MSELoss

    teacher = DenseEncoder(device="cpu")
    student = DenseEncoder(device="cpu")
    encoder = student.transformer.auto_model.encoder
    encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in (0, 2, 5)])  # keep 3 of 6 layers
    student.transformer.auto_model.config.num_hidden_layers = 3

    texts = sentences()
    train = Dataset.from_dict({"sentence": texts[:160]})
    # teacher labels computed in datasets.map, as in the seed's recipe
    train = train.map(lambda batch: {"label": teacher.encode(batch["sentence"]).tolist()}, batched=True)
    held_out = texts[160:]
    target = teacher.encode(held_out, convert_to_tensor=True)
    before = mse(student, target, held_out)
    with tempfile.TemporaryDirectory() as out:
        args = DenseTrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=16,
                                      learning_rate=2e-4, report_to=[], disable_tqdm=True, save_strategy="no")
        DenseTrainer(model=student, args=args, train_dataset=train, loss=MSELoss(student)).train()
    after = mse(student, target, held_out)
    print(f"student (3 layers) vs teacher (6 layers) embedding MSE on held-out sentences: {before:.6f} -> {after:.6f}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
