"""``sdk train dense|cross|sparse|tsdae``: fine-tune a model on a BEIR split with the default recipe.

    sdk train dense  --dataset ../shared/data/debpkg --split train --dev-split dev --base MODEL --output OUT
    sdk train cross  --dataset D --split train --base all-MiniLM-L6-v2-folder --output ./reranker
    sdk train sparse --dataset D --split train --base SPLADE-FOLDER --output ./splade --json
    sdk train tsdae  --dataset D (or sentences.txt) --base MODEL --output ./tsdae --max-sentences 20000

Prints progress, a dev evaluation before and after training when ``--dev-split`` is given, and
a summary (``--json``: one JSON object). The output folder loads in this SDK and in
sentence-transformers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sdk.core.errors import InputError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="fine-tune a dense, cross-encoder or sparse model on a BEIR split (or TSDAE on corpus text)",
        description="Fine-tune with the default recipe of each kind (dense: MNRL + mined hard negatives + Matryoshka; "
                    "cross: BCE on mined negatives; sparse: SpladeLoss; tsdae: denoising auto-encoder on unlabelled corpus "
                    "sentences), evaluate --dev-split before and after, save "
                    "a folder this SDK and sentence-transformers load.",
        epilog="examples:\n"
               "  sdk train tsdae --dataset data/debpkg --base all-MiniLM-L6-v2 --output models/tsdae --dev-split dev\n"
               "  sdk train dense --dataset data/debpkg --base all-MiniLM-L6-v2 --output models/dense --dev-split dev\n"
               "  sdk train cross --dataset data/debpkg --base models/dense --output models/reranker",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("dense", "cross", "sparse", "tsdae"),
                   help="which kind of model to train (tsdae: a dense model from unlabelled corpus text)")
    p.add_argument("--dataset", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); "
                   "tsdae also takes a corpus.jsonl or a text file of one sentence per line")
    p.add_argument("--split", default="train", help="qrels split to train on (default: train)")
    p.add_argument("--dev-split", default=None, help="qrels split to evaluate before and after training")
    p.add_argument("--base", required=True, help="model to start from: folder or hub id")
    p.add_argument("--output", required=True, help="folder to write the trained model to")
    p.add_argument("--loss", default=None,
                   help="dense: mnrl (default), cached-mnrl, triplet; cross: bce (default); sparse: splade (default); "
                        "tsdae: denoising (default)")
    p.add_argument("--hard-negatives", type=int, default=0,
                   help="mined hard negatives per pair (default: 0; cross uses 5 when not given)")
    p.add_argument("--matryoshka-dims", default=None, help="dense: comma-separated dims, e.g. 384,256,128,64")
    p.add_argument("--miner", default=None, help="dense model that mines negatives (default: the model itself; "
                   "cross: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs (default: 1)")
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch size (default: 32; tsdae: 8)")
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: 2e-5; tsdae: 3e-5)")
    p.add_argument("--max-queries", type=int, default=None, help="train on at most this many queries")
    p.add_argument("--max-sentences", type=int, default=None,
                   help="tsdae: train on a seeded sample of this many corpus sentences (default: all)")
    p.add_argument("--dev-max-queries", type=int, default=500, help="dev queries to evaluate (default: 500)")
    p.add_argument("--rerank-top", type=int, default=50, help="cross dev: candidates reranked per query")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    p.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bars)")
    p.set_defaults(handler=run)


def _dims(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        dims = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--matryoshka-dims must be comma-separated integers, got {text!r}") from None
    if any(d < 1 for d in dims):
        raise InputError(f"--matryoshka-dims must be positive, got {text!r}")
    return dims


def run(args: argparse.Namespace) -> int:
    from sdk.training.recipes import Recipe, train_recipe

    for name in ("batch_size", "dev_max_queries", "rerank_top", "max_sentences"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.hard_negatives < 0:
        raise InputError(f"--hard-negatives must be >= 0, got {args.hard_negatives}")
    if args.max_steps == 0 or args.epochs <= 0:
        raise InputError("--epochs must be > 0 and --max-steps positive (or -1 for epochs)")
    recipe = Recipe(
        kind=args.kind, dataset=args.dataset, base=args.base, output=args.output, split=args.split,
        dev_split=args.dev_split, loss=args.loss, hard_negatives=args.hard_negatives, epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_sentences=args.max_sentences,
        matryoshka_dims=_dims(args.matryoshka_dims), max_queries=args.max_queries,
        dev_max_queries=args.dev_max_queries, miner=args.miner, rerank_top=args.rerank_top, seed=args.seed,
        device=args.device, fp16=args.fp16, bf16=args.bf16, progress=not args.json,
    )
    summary = train_recipe(recipe)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"trained {summary['kind']} model from {summary['base']}: {summary['steps']} steps on "
          f"{summary['train_rows']} rows ({summary['loss']}), {summary['samples_per_s']} samples/s, "
          f"{summary['train_minutes']} min")
    key = summary.get("primary_metric")
    if key:
        print(f"dev {key}: {summary['base_metrics'].get(key, 0):.4f} -> {summary['trained_metrics'].get(key, 0):.4f}")
    print(f"saved to {summary['output']}")
    return 0
