"""The files ``sdk eval`` writes beside its summary: a TREC run, per-query metrics and an HTML report.

* TREC run: ``qid Q0 docid rank score tag`` per hit, the tag being the mode, so ``trec_eval`` and
  ``ir_measures`` read it. One file holds every mode; a path with ``{mode}`` gives one file per
  mode (what ``trec_eval`` wants: it does not split a file by tag).
* Per-query JSONL: one row per (query, mode) with every figure of ``score_run``, the top ids and
  the relevant ids, so a regression can be traced to the queries that moved.
* HTML: ONE self-contained file (no network, no JavaScript library): the charts are inline SVG
  drawn here; a few lines of inline JS add tooltips and mark each chart ``data-rendered`` once
  the browser has laid out its marks, which the browser test reads back.

Standard library only: this module sits on floor 3 and stays light.
"""

from __future__ import annotations

import html
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk.core.errors import InputError
from sdk.evaluation.beir import BeirDataset
from sdk.evaluation.metrics import recall_curve, score_by_query

__all__ = [
    "FIGURES",
    "ModeResult",
    "per_query_rows",
    "render_html",
    "trec_files",
    "write_files",
]

FIGURES = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100")  # score_run's keys, in report order
TOP_IDS = 10  # ids per row of the per-query file: the ranks nDCG@10 and MRR@10 look at
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TIE = "#8a8a8a"


@dataclass(frozen=True)
class ModeResult:
    """One evaluated mode: its tag, each query's ranked ``(doc id, score)`` pairs and what it scored."""

    mode: str
    hits: Mapping[str, Sequence[tuple[str, float]]]
    metrics: Mapping[str, float]
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # per query
    summary: Mapping[str, Any] = field(default_factory=dict)  # legs, fusion, p50 / p95 ...

    @property
    def run(self) -> dict[str, list[str]]:
        return {qid: [doc for doc, _ in ranked] for qid, ranked in self.hits.items()}


# ---- TREC run and per-query rows -------------------------------------------------------


def _trec_scores(scores: Sequence[float]) -> list[float]:
    """Scores that never rise down the ranking, so a tool that re-sorts by score keeps our order:
    a reranked head sits above a tail still carrying fused scores of another scale; from each
    rise on, the tail is shifted down as one piece (its own gaps kept)."""
    out: list[float] = []
    shift = 0.0
    for score in scores:
        value = score + shift
        if out and value > out[-1]:
            shift += out[-1] - value - 1.0
            value = out[-1] - 1.0
        out.append(value)
    return out


def _trec_text(results: Sequence[ModeResult]) -> str:
    lines: list[str] = []
    for result in results:
        for qid, ranked in result.hits.items():
            scores = _trec_scores([score for _, score in ranked])
            for rank, ((doc, _), score) in enumerate(zip(ranked, scores, strict=True), start=1):
                for name, value in (("query id", qid), ("document id", doc)):
                    if not value or any(ch.isspace() for ch in value):
                        raise InputError(f"{name} {value!r} is empty or holds whitespace, which a TREC run "
                                         f"(space-separated columns) cannot carry; rename it in the dataset")
                lines.append(f"{qid} Q0 {doc} {rank} {score:.6g} {result.mode}\n")
    return "".join(lines)


def trec_files(path: str | Path, results: Sequence[ModeResult]) -> dict[Path, str]:
    """``{path: text}``: one file with every mode, or one per mode when ``path`` holds ``{mode}``."""
    if "{mode}" in str(path):
        return {Path(str(path).replace("{mode}", r.mode)): _trec_text([r]) for r in results}
    return {Path(path): _trec_text(results)}


def per_query_rows(dataset: BeirDataset, results: Sequence[ModeResult]) -> list[dict[str, Any]]:
    """One row per (query, mode), queries in evaluation order; a figure is ``None`` where the query
    has no relevant document (see ``score_by_query``)."""
    scored = {r.mode: score_by_query(r.run, {q: dataset.qrels[q] for q in r.hits}) for r in results}
    qids = list(results[0].hits) if results else []
    rows: list[dict[str, Any]] = []
    for qid in qids:
        relevant = sorted((d for d, g in dataset.qrels[qid].items() if g > 0),
                          key=lambda d: -dataset.qrels[qid][d])
        for r in results:
            rows.append({
                "query_id": qid, "query": dataset.queries[qid], "mode": r.mode,
                **{key: scored[r.mode][qid][key] for key in FIGURES},
                "latency_ms": r.latency_ms.get(qid),
                "top_ids": [doc for doc, _ in r.hits[qid][:TOP_IDS]],
                "relevant_ids": relevant,
            })
    return rows


def _jsonl_text(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf8") as fh:  # the user's umask applies, unlike mkstemp's 0600
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files(dataset: BeirDataset, results: Sequence[ModeResult], *, run_file: str | Path | None = None,
                per_query: str | Path | None = None, report: str | Path | None = None,
                summary: Mapping[str, Any] | None = None, depth: int = 100) -> list[Path]:
    """Build every requested file first (a bad id fails before anything is written), then write
    each one atomically; returns the paths written."""
    files: dict[Path, str] = {}
    rows = per_query_rows(dataset, results)
    if run_file is not None:
        files.update(trec_files(run_file, results))
    if per_query is not None:
        files[Path(per_query)] = _jsonl_text(rows)
    if report is not None:
        files[Path(report)] = render_html(dataset, results, rows, summary or {}, depth)
    for path, text in files.items():
        try:
            _write_atomic(path, text)
        except OSError as exc:
            raise InputError(f"cannot write {path} ({exc.strerror or exc}); check the folder's permissions and "
                             f"free space, or pass another path") from exc
    return list(files)


# ---- HTML: inline SVG charts -----------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _colors(results: Sequence[ModeResult]) -> dict[str, str]:
    return {r.mode: PALETTE[i % len(PALETTE)] for i, r in enumerate(results)}


def _legend(colors: Mapping[str, str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{c}"></i>{_e(m)}</span>' for m, c in colors.items())
    return f'<div class="legend">{items}</div>'


def _axis_y(x0: float, x1: float, y: Any, ticks: Sequence[float], label: str) -> list[str]:
    """Horizontal grid lines with their value at the left, and the axis label."""
    out = [f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
           f'<text class="tick" x="{x0 - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>' for t in ticks]
    mid = (y(ticks[0]) + y(ticks[-1])) / 2
    out.append(f'<text class="label" transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle">'
               f'{_e(label)}</text>')
    return out


def _svg(chart: str, width: int, height: int, title: str, body: Sequence[str]) -> str:
    return (f'<svg data-chart="{chart}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_e(title)}">{"".join(body)}</svg>')


def _bar_chart(results: Sequence[ModeResult], colors: Mapping[str, str]) -> str:
    """Grouped bars: one group per figure, one bar per mode."""
    width, height, left, right, top, bottom = 760, 300, 56, 16, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(v: float) -> float:
        return top + plot_h * (1 - v)

    body = _axis_y(left, width - right, y, [0, 0.2, 0.4, 0.6, 0.8, 1.0], "score")
    group = plot_w / len(FIGURES)
    bar = group * 0.8 / max(len(results), 1)
    for g, key in enumerate(FIGURES):
        x0 = left + g * group + group * 0.1
        body.append(f'<text class="tick" x="{left + (g + 0.5) * group:.1f}" y="{height - bottom + 18}" '
                    f'text-anchor="middle">{_e(key)}</text>')
        for i, r in enumerate(results):
            v = min(max(float(r.metrics.get(key, 0.0)), 0.0), 1.0)
            body.append(f'<rect class="mark" data-mode="{_e(r.mode)}" x="{x0 + i * bar:.1f}" y="{y(v):.1f}" '
                        f'width="{max(bar - 2, 1):.1f}" height="{max(plot_h * v, 0.5):.1f}" fill="{colors[r.mode]}" '
                        f'data-tip="{_e(r.mode)} {_e(key)} = {_f(v)}"/>')
    return _svg("metrics", width, height, "metrics per mode", body)


def _pair(results: Sequence[ModeResult]) -> tuple[ModeResult, ModeResult] | None:
    """The two modes the scatter compares: dense vs hybrid when both ran, else the first two."""
    by_mode = {r.mode: r for r in results}
    for a, b in (("dense", "hybrid"), ("dense+rerank", "hybrid+rerank"), ("hybrid", "hybrid+rerank")):
        if a in by_mode and b in by_mode:
            return by_mode[a], by_mode[b]
    return (results[0], results[1]) if len(results) >= 2 else None


def _scatter(pair: tuple[ModeResult, ModeResult], rows: Sequence[Mapping[str, Any]],
             colors: Mapping[str, str]) -> tuple[str, str]:
    """Per-query nDCG@10 of one mode against the other, a diagonal, points coloured by the winner."""
    a, b = pair
    size, pad = 380, 48
    plot = size - 2 * pad

    def pos(v: float) -> float:
        return pad + plot * v

    def y(v: float) -> float:
        return size - pad - plot * v

    by_query: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_query.setdefault(row["query_id"], {})[row["mode"]] = row
    body = _axis_y(pad, size - pad, y, [0, 0.25, 0.5, 0.75, 1.0], f"{b.mode} nDCG@10")
    body += [f'<text class="tick" x="{pos(t):.1f}" y="{size - pad + 16}" text-anchor="middle">{t:g}</text>'
             for t in (0, 0.25, 0.5, 0.75, 1.0)]
    body.append(f'<text class="label" x="{size / 2}" y="{size - 8}" text-anchor="middle">{_e(a.mode)} nDCG@10</text>')
    body.append(f'<line class="diagonal" x1="{pos(0)}" y1="{y(0)}" x2="{pos(1)}" y2="{y(1)}"/>')
    wins = {a.mode: 0, b.mode: 0, "tie": 0}
    stacked: dict[tuple[float, float], int] = {}
    for qid, modes in by_query.items():
        va, vb = modes[a.mode]["ndcg@10"], modes[b.mode]["ndcg@10"]
        if va is None or vb is None:
            continue
        winner = b.mode if vb > va + 1e-12 else a.mode if va > vb + 1e-12 else "tie"
        wins[winner] += 1
        fill = colors[winner] if winner != "tie" else TIE
        tip = f"{qid}: {modes[a.mode]['query'][:120]} | {a.mode} {va:.3f}, {b.mode} {vb:.3f}"
        body.append(f'<circle class="mark" cx="{pos(va):.1f}" cy="{y(vb):.1f}" r="4.5" fill="{fill}" '
                    f'data-winner="{_e(winner)}" data-tip="{_e(tip)}"/>')
        spot = (round(pos(va), 1), round(y(vb), 1))
        stacked[spot] = stacked.get(spot, 0) + 1
    # Queries on the same spot (often 1/1 or 0/0) would hide each other: say how many are there.
    body += [f'<text class="tick" x="{cx + 7}" y="{cy - 6}">&#215;{n}</text>' for (cx, cy), n in stacked.items() if n > 1]
    caption = (f"{_e(b.mode)} better on {wins[b.mode]} queries, {_e(a.mode)} better on {wins[a.mode]}, "
               f"tied on {wins['tie']} (above the diagonal: {_e(b.mode)} wins)")
    return _svg("scatter", size, size, f"{a.mode} vs {b.mode} nDCG@10 per query", body), caption


def _recall_chart(dataset: BeirDataset, results: Sequence[ModeResult], colors: Mapping[str, str],
                  depth: int) -> str:
    """Recall@k for k = 1..depth, one line per mode."""
    width, height, left, right, top, bottom = 760, 320, 56, 16, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(k: int) -> float:
        return left + plot_w * (k - 1) / max(depth - 1, 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v)

    body = _axis_y(left, width - right, y, [0, 0.2, 0.4, 0.6, 0.8, 1.0], "recall")
    ticks = sorted({1, *range(10, depth + 1, 10 if depth <= 100 else max(depth // 10, 1))})
    body += [f'<text class="tick" x="{x(k):.1f}" y="{height - bottom + 16}" text-anchor="middle">{k}</text>'
             for k in ticks]
    body.append(f'<text class="label" x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">k</text>')
    for r in results:
        curve = recall_curve(r.run, {q: dataset.qrels[q] for q in r.hits}, depth)
        points = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in enumerate(curve, start=1))
        tip = f"{r.mode}: recall@1 {curve[0]:.3f}, @10 {curve[min(9, depth - 1)]:.3f}, @{depth} {curve[-1]:.3f}"
        body.append(f'<polyline class="mark" data-mode="{_e(r.mode)}" points="{points}" fill="none" '
                    f'stroke="{colors[r.mode]}" stroke-width="2.5" data-tip="{_e(tip)}"/>')
    return _svg("recall", width, height, "recall@k per mode", body)


def _metrics_table(results: Sequence[ModeResult]) -> str:
    best = {key: max(float(r.metrics.get(key, 0.0)) for r in results) for key in FIGURES}
    head = "".join(f"<th>{_e(k)}</th>" for k in ("mode", "legs", "fusion", *FIGURES, "p50 ms", "p95 ms"))
    body = []
    for r in results:
        cells = [_e(r.mode), _e(" + ".join(r.summary.get("legs", []))), _e(r.summary.get("fusion", "-"))]
        cells += [(f"<b>{_f(r.metrics[k])}</b>" if r.metrics.get(k) == best[k] else _f(r.metrics.get(k)))
                  for k in FIGURES]
        cells += [_f(r.summary.get("latency_p50_ms"), 1), _f(r.summary.get("latency_p95_ms"), 1)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="metrics"><tr>{head}</tr>{"".join(body)}</table>'


def _heat(value: float | None) -> str:
    if value is None:
        return ""
    hue = 120 * min(max(value, 0.0), 1.0)  # red (0) .. green (1)
    return f' style="background:hsl({hue:.0f},70%,88%)"'


def _query_table(results: Sequence[ModeResult], rows: Sequence[Mapping[str, Any]]) -> str:
    """Every query, worst first (lowest nDCG@10 averaged over the modes)."""
    by_query: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_query.setdefault(row["query_id"], {})[row["mode"]] = row

    def mean_ndcg(modes: Mapping[str, Mapping[str, Any]]) -> float:
        return sum(m["ndcg@10"] or 0.0 for m in modes.values()) / len(modes)

    order = sorted(by_query.items(), key=lambda item: mean_ndcg(item[1]))
    head = "".join(f"<th>{_e(h)}</th>" for h in ("#", "query id", "query", *(f"{r.mode} nDCG@10" for r in results),
                                                  "relevant"))
    body = []
    for n, (qid, modes) in enumerate(order, start=1):
        first = next(iter(modes.values()))
        relevant = set(first["relevant_ids"])
        cells = [f"<td>{n}</td><td>{_e(qid)}</td><td>{_e(first['query'])}</td>"]
        for r in results:
            row = modes[r.mode]
            top = ", ".join(d + (" (relevant)" if d in relevant else "") for d in row["top_ids"][:3])
            cells.append(f'<td{_heat(row["ndcg@10"])} title="top 3: {_e(top)}">{_f(row["ndcg@10"], 3)}</td>')
        shown = first["relevant_ids"][:5]
        more = f" +{len(first['relevant_ids']) - 5}" if len(first["relevant_ids"]) > 5 else ""
        cells.append(f"<td>{_e(', '.join(shown))}{more}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="queries"><tr>{head}</tr>{"".join(body)}</table>'


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#222;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin:0 0 12px}.meta span{margin-right:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}table.metrics td{font-variant-numeric:tabular-nums}
table.queries td:nth-child(3){max-width:420px}
.legend{margin:4px 0}.key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
svg{display:block;background:#fff}svg .grid{stroke:#e6e6e6}svg .tick{font-size:11px;fill:#555}
svg .label{font-size:12px;fill:#333}svg .diagonal{stroke:#999;stroke-dasharray:4 4}
svg .mark:hover{opacity:.75}.note{color:#666}
#tip{position:absolute;display:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;
max-width:420px;pointer-events:none}
"""

# Tooltips, then a check that each chart was laid out: every mark has a non-empty box. The test
# reads the attributes back from the DOM chromium dumps after this ran.
_JS = """
(function () {
  var tip = document.getElementById('tip');
  document.addEventListener('mouseover', function (e) {
    var t = e.target.closest ? e.target.closest('[data-tip]') : null;
    if (!t) { tip.style.display = 'none'; return; }
    tip.textContent = t.getAttribute('data-tip'); tip.style.display = 'block';
  });
  document.addEventListener('mousemove', function (e) {
    tip.style.left = (e.pageX + 12) + 'px'; tip.style.top = (e.pageY + 12) + 'px';
  });
  var charts = document.querySelectorAll('svg[data-chart]'), done = 0;
  charts.forEach(function (svg) {
    var box = svg.getBoundingClientRect(), marks = svg.querySelectorAll('.mark'), drawn = 0;
    marks.forEach(function (m) { var b = m.getBBox(); if (b.width > 0 || b.height > 0) { drawn++; } });
    svg.setAttribute('data-marks', String(marks.length));
    svg.setAttribute('data-drawn', String(drawn));
    if (box.width > 0 && box.height > 0 && marks.length > 0 && drawn === marks.length) {
      svg.setAttribute('data-rendered', 'yes'); done++;
    }
  });
  document.body.setAttribute('data-charts-rendered', done + '/' + charts.length);
})();
"""


def render_html(dataset: BeirDataset, results: Sequence[ModeResult], rows: Sequence[Mapping[str, Any]],
                summary: Mapping[str, Any], depth: int = 100) -> str:
    """The report as one HTML string; ``rows`` are ``per_query_rows`` and ``summary`` the
    run's facts shown under the title (dataset, store, documents ...)."""
    if not results:
        raise InputError("no mode was evaluated, so there is nothing to report; pass --mode")
    colors = _colors(results)
    pair = _pair(results)
    meta = "".join(f"<span><b>{_e(k)}</b> {_e(v)}</span>" for k, v in summary.items() if v not in (None, ""))
    if pair is not None:
        scatter_svg, caption = _scatter(pair, rows, colors)
        winners = {f"{pair[1].mode} wins": colors[pair[1].mode], f"{pair[0].mode} wins": colors[pair[0].mode],
                   "tie": TIE}
        scatter = (f"<h2>Per query: {_e(pair[0].mode)} vs {_e(pair[1].mode)} (nDCG@10)</h2>"
                   f'<p class="note">{caption}</p>{_legend(winners)}{scatter_svg}')
    else:
        scatter = '<h2>Per query</h2><p class="note">The scatter compares two modes; evaluate two or more ' \
                  "(e.g. --mode dense,hybrid).</p>"
    queries = len(results[0].hits)
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sdk eval: {_e(summary.get('dataset', ''))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Retrieval evaluation</h1><p class=\"meta\">{meta}</p>",
        f"<p class=\"meta\">{queries} queries, modes {_e(', '.join(r.mode for r in results))}; written "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>",
        "<h2>Metrics per mode</h2>", _metrics_table(results), _legend(colors), _bar_chart(results, colors),
        scatter,
        f"<h2>Recall@k, k = 1..{depth}</h2>", _legend(colors), _recall_chart(dataset, results, colors, depth),
        "<h2>Queries, worst first</h2>",
        '<p class="note">Ordered by nDCG@10 averaged over the modes; hover a score for that mode\'s top 3.</p>',
        _query_table(results, rows),
        f'<div id="tip"></div><script>{_JS}</script></body></html>\n',
    ])

