"""``sdk eval``: index a BEIR dataset into a fresh collection, run its queries, print the metrics.

    sdk eval --dataset ../shared/data/pyfaq --store qdrant+local::memory: --mode hybrid
    sdk eval --dataset DIR --store postgresql://postgres@127.0.0.1:5432/sdk --reranker ./my-ce --json

The collection gets a unique name and is dropped afterwards (``--keep`` keeps it and prints its
name), so an evaluation never touches a user's collection. On a store without user sparse
vectors but with a BM25 text leg (Weaviate), ``sparse`` means that BM25 and ``hybrid`` fuses it
with the dense leg; the output says so.

``--evaluator ir`` and ``--evaluator rerank`` score a model folder directly, without a database,
with the same evaluators training uses (``sdk.evaluation``):

    sdk eval --evaluator ir --dataset DIR --mode dense --dense-model ./my-model --json
    sdk eval --evaluator rerank --dataset DIR --reranker ./my-ce --rerank-top 50

``ir`` evaluates the dense model, the sparse model or both (``--mode``); ``rerank`` reranks the
top ``--rerank-top`` hits of the dense (``--mode sparse``: sparse) model and also reports the
first stage's figures (``base_*``). ``--max-corpus`` keeps the relevant documents plus others up
to that many.

Several modes in one run (the collection is indexed once) and the files for looking closer:

    sdk eval --dataset DIR --store memory:// --mode all --reranker ./my-ce \
        --run-file run.trec --per-query per_query.jsonl --report report.html

``--mode`` takes a comma list of ``dense``, ``sparse``, ``hybrid`` and their reranked forms
(``hybrid+rerank``), or ``all`` (the three, plus ``hybrid+rerank`` with ``--reranker``). With
``--reranker`` and no ``+rerank`` mode listed, every listed mode is reranked (as a single
``--mode`` always was). ``--run-file``: a TREC run (``qid Q0 docid rank score tag``, tag = mode)
holding every mode, or one file per mode when the path contains ``{mode}``; ``--per-query``: one
JSON line per (query, mode) with every figure, the top 10 ids and the relevant ids;
``--report``: one self-contained HTML file (inline SVG charts, no network): metrics per mode,
a per-query dense vs hybrid nDCG@10 scatter, recall@k curves and the queries, worst first.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from sdk.core.errors import CapabilityError, InputError

__all__ = ["Mode", "parse_modes", "register", "run"]

MODES = ("dense", "sparse", "hybrid")
EVALUATORS = ("pipeline", "ir", "rerank")
RETRIEVE = 100  # hits per query: Recall@100 needs them
RERANKED = "+rerank"
EPILOG = """files (--evaluator pipeline):
  --run-file run.trec          TREC run, 'qid Q0 docid rank score mode' per hit; '{mode}' in the path
                               writes one file per mode (trec_eval reads one run per file)
  --per-query per_query.jsonl  one JSON line per (query, mode): every metric, top 10 ids, relevant ids
  --report report.html         one self-contained HTML file: metrics per mode, dense vs hybrid scatter,
                               recall@k curves, queries worst first (inline SVG, no network)
example:
  sdk eval --dataset ../shared/data/pyfaq --store memory:// --mode all \\
      --run-file run.trec --per-query per_query.jsonl --report report.html"""


class Mode(NamedTuple):
    """One evaluated configuration: ``tag`` names it in every output (``hybrid+rerank``)."""

    tag: str
    base: str  # dense, sparse or hybrid: the legs queried
    rerank: bool


def parse_modes(text: str, reranker: str | None) -> list[Mode]:
    """``--mode``: a comma list of dense / sparse / hybrid (``+rerank`` for the reranked form) or ``all``."""
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if tokens == ["all"]:
        tokens = [*MODES, *(["hybrid" + RERANKED] if reranker else [])]
    bad = [t for t in tokens if t.removesuffix(RERANKED) not in MODES]
    if not tokens or bad:
        raise InputError(f"--mode {text!r}: use dense, sparse, hybrid, their reranked form (hybrid+rerank), "
                         f"a comma list of those (dense,hybrid) or all")
    if len(set(tokens)) != len(tokens):
        raise InputError(f"--mode {text!r} names a mode twice; list each once")
    explicit = any(t.endswith(RERANKED) for t in tokens)
    if explicit and not reranker:
        raise InputError(f"--mode {text!r} reranks, which needs --reranker (a cross-encoder folder or hub id)")
    if reranker and not explicit:  # the reranker applies to every listed mode, as with one --mode
        tokens = [t + RERANKED for t in tokens]
    return [Mode(t, t.removesuffix(RERANKED), t.endswith(RERANKED)) for t in tokens]


def _output_path(value: str | None, flag: str) -> Path | None:
    """Where the user asked for a file, refused before any work if it cannot be written there."""
    if value is None:
        return None
    path = Path(value)
    folders = {path.parent} | ({Path(value.replace("{mode}", "x")).parent} if "{mode}" in value else set())
    for folder in folders:
        if not folder.is_dir():
            raise InputError(f"{flag}: the folder {folder} does not exist; create it or pass another path")
        if not os.access(folder, os.W_OK):
            raise InputError(f"{flag}: the folder {folder} is not writable; fix its permissions or pass another path")
    if path.is_dir():
        raise InputError(f"{flag} {value} is a folder; pass a file path, e.g. {path / 'out'}")
    return path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate retrieval on a BEIR dataset against a database (or a model directly)",
                       description="Index a BEIR dataset into a store, search its queries in each --mode and print "
                                   "nDCG@10, MRR@10, Recall@10/100 and MAP@100; optionally a TREC run, per-query "
                                   "metrics and an HTML report.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--store", default=None,
                   help="database URL, e.g. qdrant+local::memory: or postgresql://... (needed by --evaluator pipeline)")
    p.add_argument("--evaluator", default="pipeline", choices=EVALUATORS,
                   help="pipeline: index into --store and search it (default); ir / rerank: score the models "
                        "directly, no database")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument("--mode", default="hybrid",
                   help="legs to query: dense, sparse, hybrid, a reranked form (hybrid+rerank), a comma list "
                        "(dense,sparse,hybrid) or all (default: hybrid; ir / rerank take one of the three)")
    p.add_argument("--reranker", default=None, help="cross-encoder folder to rerank with")
    p.add_argument("--rerank-top", type=positive_int, default=100, help="hits the reranker rescores (default: 100)")
    p.add_argument("--dense-model", default=None, help="dense model folder or hub id (default: all-MiniLM-L6-v2)")
    p.add_argument("--sparse-model", default=None, help="SPLADE folder or hub id (default: packaged SPLADE-tiny)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--max-queries", type=positive_int, default=None, help="evaluate only the first N queries")
    p.add_argument("--max-corpus", type=positive_int, default=None,
                   help="ir / rerank: keep the relevant documents plus others up to N documents")
    p.add_argument("--batch-size", type=positive_int, default=32, help="encoder batch size")
    p.add_argument("--client-fusion", action="store_true",
                   help="allow client-side fusion when the store has no native form of the fusion")
    p.add_argument("--keep", action="store_true", help="keep the collection instead of dropping it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--run-file", default=None,
                   help="write a TREC run here (tag = mode; {mode} in the path: one file per mode)")
    p.add_argument("--per-query", default=None, help="write per-query metrics here (JSON lines, one per query and mode)")
    p.add_argument("--report", default=None, help="write a self-contained HTML report with charts here")
    p.set_defaults(handler=run)


def _encoders(args: argparse.Namespace, caps: Any, modes: list[Mode]) -> tuple[Any, Any, bool]:
    """(dense, sparse, text_leg) the modes need on this store: one index serves them all."""
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder

    lexical = any(m.base in ("sparse", "hybrid") for m in modes)
    text_leg = lexical and not caps.sparse and caps.text_leg
    if lexical and not caps.sparse and not caps.text_leg:
        raise CapabilityError(f"{caps.name} has neither sparse vectors nor a BM25 leg; use --mode dense")
    needs_dense = any(m.base != "sparse" for m in modes) or text_leg
    dense = DenseEncoder(args.dense_model, device=args.device) if needs_dense else None
    sparse = SparseEncoder(args.sparse_model, device=args.device) if lexical and caps.sparse else None
    return dense, sparse, text_leg


def _evaluate_mode(mode: Mode, searcher: Any, evaluator: Any) -> Any:
    """One mode's queries through ``searcher``, keeping each hit's score and each query's time
    (the TREC run and the per-query file need them; ``EvaluationResult.run`` has ids only)."""
    from sdk.evaluation.report import ModeResult

    hits: dict[str, list[tuple[str, float]]] = {}
    took: dict[str, float] = {}

    def search(qid: str, text: str) -> list[Any]:
        t0 = time.perf_counter()
        found = searcher.search(text, limit=RETRIEVE)
        took[qid] = round((time.perf_counter() - t0) * 1000, 3)
        hits[qid] = [(h.id, float(h.score)) for h in found]
        return found

    result = evaluator.evaluate(search)
    summary = {"mode": mode.tag, "legs": list(searcher.legs), "fusion": searcher.fusion_mode,
               "reranked": mode.rerank, **result.metrics,
               "latency_p50_ms": result.latency["p50_ms"], "latency_p95_ms": result.latency["p95_ms"]}
    return ModeResult(mode.tag, hits, dict(result.metrics), took, summary)


def run(args: argparse.Namespace) -> int:
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.evaluation import RetrievalEvaluator, index_dataset, load_beir
    from sdk.retrieval.pipeline import RetrievalPipeline, resolve_store

    if args.rerank_top < 1:
        raise InputError(f"--rerank-top must be >= 1, got {args.rerank_top}")
    if args.evaluator != "pipeline":
        return _run_model_evaluator(args)
    if not args.store:
        raise InputError("--store is required (or use --evaluator ir / rerank to evaluate a model without a database)")
    modes = parse_modes(args.mode, args.reranker)
    outputs = {"run_file": _output_path(args.run_file, "--run-file"),
               "per_query": _output_path(args.per_query, "--per-query"),
               "report": _output_path(args.report, "--report")}
    given = [str(path.resolve()) for path in outputs.values() if path is not None]
    if len(set(given)) != len(given):
        raise InputError("--run-file, --per-query and --report name the same file; give each its own path")
    dataset = load_beir(args.dataset, args.split)
    if not dataset.queries:
        raise InputError(f"{args.dataset} has no queries with judgements in split {args.split!r}")
    adapter, _ = resolve_store(args.store)
    bases = list(dict.fromkeys(m.base for m in modes))
    collection = f"eval_{bases[0] if len(bases) == 1 else 'modes'}_{uuid.uuid4().hex[:10]}"
    try:
        caps = adapter.capabilities
        dense, sparse, text_leg = _encoders(args, caps, modes)
        reranker = CrossEncoder(args.reranker, device=args.device) if args.reranker else None
        common = {"store": adapter, "collection": collection, "batch_size": args.batch_size}
        # Weaviate's BM25-only "sparse" mode still needs a vector field to create the collection.
        indexer = RetrievalPipeline(dense, sparse, **common)
        t0 = time.perf_counter()
        n_docs = index_dataset(indexer, dataset)
        index_s = time.perf_counter() - t0
        evaluator = RetrievalEvaluator(dataset, limit=RETRIEVE, max_queries=args.max_queries)
        results = []
        for mode in modes:
            searcher = RetrievalPipeline(None if mode.base == "sparse" else dense,
                                         None if mode.base == "dense" else sparse,
                                         text_leg=text_leg and mode.base != "dense",
                                         reranker=reranker if mode.rerank else None, rerank_top=args.rerank_top,
                                         limit=RETRIEVE, client_fusion=args.client_fusion, **common)
            results.append(_evaluate_mode(mode, searcher, evaluator))
    finally:
        if not args.keep:
            adapter.drop(collection)
        adapter.close()
    report: dict[str, Any] = {
        "dataset": args.dataset, "split": args.split, "store": caps.name, "collection": collection,
        "reranker": args.reranker, "rerank_top": args.rerank_top if any(m.rerank for m in modes) else None,
        "documents": n_docs, "index_s": round(index_s, 2), "queries": len(evaluator.queries),
        "kept": bool(args.keep), "modes": [r.summary for r in results],
    }
    if len(modes) == 1:  # one mode: its figures at the top level too, as before several modes existed
        report.update({**results[0].summary, "mode": modes[0].base})
    report["files"] = [str(p) for p in _write_outputs(dataset, results, outputs, report)]
    _print(report, args.json)
    return 0


def _write_outputs(dataset: Any, results: list[Any], outputs: dict[str, Path | None],
                   report: dict[str, Any]) -> list[Path]:
    if not any(outputs.values()):
        return []
    from sdk.evaluation.report import write_files

    summary = {key: report[key] for key in ("dataset", "split", "store", "documents", "queries", "reranker")}
    summary["index s"] = report["index_s"]
    return write_files(dataset, results, summary=summary, depth=RETRIEVE, **outputs)


def _run_model_evaluator(args: argparse.Namespace) -> int:
    """``--evaluator ir`` / ``rerank``: the training-time evaluators on a BEIR split, no database."""
    from sdk.encoders.cross_encoder import CrossEncoder
    from sdk.encoders.dense import DenseEncoder
    from sdk.encoders.sparse import SparseEncoder
    from sdk.evaluation import ir_evaluator_from_beir, reranking_evaluator_from_beir

    if args.mode not in MODES:
        raise InputError(f"--evaluator {args.evaluator} takes one --mode: dense, sparse or hybrid (got {args.mode!r})")
    if args.run_file or args.per_query or args.report:
        raise InputError("--run-file, --per-query and --report come with --evaluator pipeline (the default); "
                         f"drop them or the --evaluator {args.evaluator}")
    subset = {"max_corpus": args.max_corpus, "max_queries": args.max_queries}
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    primary: dict[str, str] = {}
    if args.evaluator == "ir":
        legs = ("dense", "sparse") if args.mode == "hybrid" else (args.mode,)
        for leg in legs:
            model = (DenseEncoder(args.dense_model, device=args.device) if leg == "dense"
                     else SparseEncoder(args.sparse_model, device=args.device))
            evaluator = ir_evaluator_from_beir(args.dataset, args.split, name=leg, batch_size=args.batch_size,
                                               write_csv=False, **subset)
            metrics.update(evaluator(model))
            primary[leg] = str(evaluator.primary_metric)
    else:
        if not args.reranker:
            raise InputError("--evaluator rerank needs --reranker (a cross-encoder folder or hub id)")
        leg = "sparse" if args.mode == "sparse" else "dense"
        retriever = (SparseEncoder(args.sparse_model, device=args.device) if leg == "sparse"
                     else DenseEncoder(args.dense_model, device=args.device))
        evaluator = reranking_evaluator_from_beir(args.dataset, args.split, retriever, top_k=args.rerank_top, name="",
                                                  encode_batch_size=args.batch_size, write_csv=False, **subset)
        metrics = evaluator(CrossEncoder(args.reranker, device=args.device))
        primary[leg] = str(evaluator.primary_metric)
    report = {
        "dataset": args.dataset, "split": args.split, "evaluator": args.evaluator, "mode": args.mode,
        "reranker": args.reranker if args.evaluator == "rerank" else None,
        "rerank_top": args.rerank_top if args.evaluator == "rerank" else None,
        "queries": len(evaluator.query_ids) if args.evaluator == "ir" else len(evaluator.samples),
        "documents": len(evaluator.corpus) if args.evaluator == "ir" else None,
        "primary_metrics": primary, "metrics": metrics, "seconds": round(time.perf_counter() - t0, 2),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    what = f"reranking the {leg} top {args.rerank_top} with {args.reranker}" if args.evaluator == "rerank" \
        else f"{' + '.join(primary)} model{'s' if len(primary) > 1 else ''}"
    print(f"{args.dataset} ({args.split}): {report['queries']} queries, {what}, {report['seconds']} s")
    for key, value in metrics.items():
        mark = " *" if key in primary.values() else ""
        print(f"  {key:<28} {value:.4f}{mark}")
    return 0


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    print(f"{report['dataset']} ({report['split']}): {report['documents']} documents indexed into "
          f"{report['store']} in {report['index_s']} s; {report['queries']} queries")
    if report["reranker"]:
        print(f"reranker {report['reranker']} rescores the top {report['rerank_top']} hits of each +rerank mode")
    keys = ("ndcg@10", "mrr@10", "recall@100", "map@100")
    print(f"  {'mode':<15} {'legs (fusion)':<26} " + " ".join(f"{k:>10}" for k in keys) + f" {'p50 ms':>8} {'p95 ms':>8}")
    for m in report["modes"]:
        legs = " + ".join("BM25 text" if leg == "text" else leg for leg in m["legs"]) + f" ({m['fusion']})"
        figures = " ".join(f"{m[k]:>10.4f}" for k in keys)
        print(f"  {m['mode']:<15} {legs:<26} {figures} {m['latency_p50_ms']:>8.1f} {m['latency_p95_ms']:>8.1f}")
    for path in report["files"]:
        print(f"wrote {path}")
    print(f"collection {report['collection']} " + ("kept" if report["kept"] else "dropped (--keep keeps it)"))
