"""TSDAE on debpkg: does training on the corpus's own text (no labels) improve retrieval?

    python bench/tsdae.py --sentences 20000 --batch-size 8            # both starts, 1 epoch
    python bench/tsdae.py --models weak --sentences 20000 --steps 1000
    python bench/tsdae.py --sentences 64 --steps 2 --test-queries 20 --corpus 500 --out /tmp/x.jsonl  # smoke

For each start model: test nDCG@10 (exact cosine search over the corpus, ``sdk.evaluation``'s
InformationRetrievalEvaluator), then DenoisingAutoEncoderLoss on ``--sentences`` sentences cut from
debpkg's corpus.jsonl (deletion noise 0.6, decoder tied to the encoder, learning rate 3e-5 constant,
no weight decay: the paper's settings), then test nDCG@10 again. Starts:
- ``minilm``: the packaged all-MiniLM-L6-v2 (already trained on a billion pairs);
- ``weak``: SPLADE-tiny's 2-layer BERT (width 128) used as a dense model with mean pooling, a model
  that never learnt sentence embeddings, so TSDAE has something to teach.
Each start prints one JSON line (appended to ``--out``): nDCG@10 before/after, training sentences/s,
minutes, the first and last logged training loss, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SDK_DATA_DIR", REPO.parent / "shared" / "data"))
WORK = Path(os.environ.get("RF_TSDAE_WORK", "/tmp/rf_tsdae"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_start(which: str) -> tuple[Any, str]:
    """The model a run starts from, and a name for it."""
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.modules import Pooling, Transformer
    from sdk.encoders.packaged import DEFAULT_MODELS

    model = DEFAULT_MODELS[0] if which == "minilm" else DEFAULT_MODELS[1]
    folder = model.folder()
    if folder is None:
        raise SystemExit(f"{model.name} is not installed: run `sdk models install` (or scripts/setup.sh)")
    if which == "minilm":
        return DenseEncoder(folder, device="cpu"), model.name
    transformer = Transformer.load(folder)  # the BERT under SPLADE-tiny's MLM head
    pooling = Pooling(transformer.get_word_embedding_dimension(), "mean")
    return DenseEncoder(modules=[transformer, pooling], device="cpu"), f"{model.name} BERT, mean pooling"


def evaluate(evaluator: Any, model: Any) -> tuple[float, float]:
    started = time.perf_counter()
    metrics = evaluator(model)
    return round(float(metrics[evaluator.primary_metric]), 4), time.perf_counter() - started


def run(which: str, args: argparse.Namespace, sentences: list[str], evaluator: Any) -> dict[str, Any]:
    from sdk.encoders.backends.machine import machine_info
    from sdk.training import DenoisingAutoEncoderDataset, DenseTrainer, DenseTrainingArguments
    from sdk.training.losses import DenoisingAutoEncoderLoss

    model, name = load_start(which)
    log(f"{which}: evaluating {len(evaluator.queries)} test queries over {len(evaluator.corpus)} documents")
    before, eval_s = evaluate(evaluator, model)
    log(f"{which}: nDCG@10 before {before} ({eval_s:.0f} s)")
    loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    data = DenoisingAutoEncoderDataset(sentences, seed=args.seed)
    steps = args.steps if args.steps > 0 else -1
    training = DenseTrainingArguments(
        output_dir=str(WORK / f"{which}_ckpt"), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        max_steps=steps, learning_rate=args.learning_rate, lr_scheduler_type="constant", weight_decay=0.0,
        seed=args.seed, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        logging_steps=max(1, (args.steps if args.steps > 0 else len(sentences) // args.batch_size) // 20),
    )
    trainer = DenseTrainer(model=model, args=training, train_dataset=data, loss=loss)
    log(f"{which}: TSDAE on {len(sentences)} sentences, batch {args.batch_size}")
    started = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - started
    seen = output.global_step * args.batch_size
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if args.save:
        trainer.save_model(str(Path(args.save) / which))
    after, _ = evaluate(evaluator, model)
    log(f"{which}: nDCG@10 after {after}")
    return {
        "bench": "tsdae", "start": which, "model": name, "sentences": len(sentences), "steps": output.global_step,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "test_ndcg@10": {"before": before, "after": after, "delta": round(after - before, 4)},
        "test_queries": len(evaluator.queries), "corpus_docs": len(evaluator.corpus),
        "train_minutes": round(train_s / 60, 2), "sentences_per_s": round(seen / train_s, 2),
        "train_loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
        "eval_minutes": round(eval_s / 60, 2), "date": time.strftime("%Y-%m-%d"), "machine": machine_info(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="minilm,weak", help="comma-separated starts: minilm, weak")
    p.add_argument("--sentences", type=int, default=20000, help="training sentences sampled from the corpus")
    p.add_argument("--steps", type=int, default=0, help="training steps (0: one epoch over --sentences)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=3e-5)
    p.add_argument("--test-queries", type=int, default=0, help="test queries (0: all 2,496)")
    p.add_argument("--corpus", type=int, default=0,
                   help="documents searched (0: all 24,809; else the judged ones plus a seeded sample)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: every CPU; on a busy machine 1 is far faster than oversubscribing)")
    p.add_argument("--save", default=None, help="folder to save each trained model in (<save>/<start>)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / f"tsdae_{time.strftime('%Y-%m-%d')}.jsonl"))
    args = p.parse_args()
    starts = [m.strip() for m in args.models.split(",") if m.strip()]
    if bad := [m for m in starts if m not in ("minilm", "weak")]:
        raise SystemExit(f"--models takes minilm and/or weak, got {bad}")
    if args.sentences < 1 or args.batch_size < 1 or args.steps < 0:
        raise SystemExit("--sentences and --batch-size must be >= 1, --steps >= 0")
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(parents=True, exist_ok=True)
    from sdk.evaluation import ir_evaluator_from_beir
    from sdk.training import corpus_sentences

    folder = DATA / "debpkg"
    sentences = corpus_sentences(folder, max_sentences=args.sentences, seed=args.seed)
    evaluator = ir_evaluator_from_beir(folder, "test", name="test", max_queries=args.test_queries or None,
                                       max_corpus=args.corpus or None, seed=7, write_csv=False, batch_size=64)
    for which in starts:
        started = time.perf_counter()
        result = run(which, args, sentences, evaluator)
        result["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
        result["args"] = {k: v for k, v in vars(args).items() if k != "out"}
        line = json.dumps(result)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf8") as fh:  # recorded first: a closed stdout loses nothing
            fh.write(line + "\n")
        print(line, flush=True)


if __name__ == "__main__":
    main()
