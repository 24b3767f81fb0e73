"""``sdk eval --run-file --per-query --report`` on a pyfaq slice with the packaged default models.

The TREC run must be the very run that was scored, the per-query rows must average to the printed
figures, and the HTML report must be one self-contained file whose charts a real browser draws:
headless Chromium (Debian's ``chromium``, installed by ``scripts/browser.sh``) runs its inline JS,
and the DOM it dumps and the screenshot it takes are checked here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import zlib
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdk.cli.main import main
from sdk.core.errors import InputError
from sdk.evaluation import load_beir, score_run
from sdk.evaluation.report import FIGURES, PALETTE, ModeResult, trec_files
from tests.encoder_fixtures import build_tiny_cross_encoder, mini_pyfaq

N_QUERIES = 4
MODES = ["dense", "sparse", "hybrid", "hybrid+rerank"]  # --mode all with --reranker
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``sdk eval --mode all`` run (packaged MiniLM + SPLADE-tiny, a tiny reranker over the top 5)
    writing all three files; the printed JSON and the paths come back."""
    root = tmp_path_factory.mktemp("eval-report")
    data = mini_pyfaq(root / "beir", N_QUERIES, None, 240, distractors=16)
    reranker = build_tiny_cross_encoder(root / "ce", 1)
    out = root / "out"
    out.mkdir()
    paths = {"run": out / "run.trec", "rows": out / "per_query.jsonl", "html": out / "report.html"}
    argv = ["eval", "--dataset", str(data), "--store", "memory://", "--mode", "all", "--reranker", str(reranker),
            "--rerank-top", "5", "--device", "cpu", "--run-file", str(paths["run"]), "--per-query",
            str(paths["rows"]), "--report", str(paths["html"]), "--json"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(argv)
    assert rc == 0
    return {"report": json.loads(stdout.getvalue()), "dataset": load_beir(data), **paths}


def test_trec_run_is_the_scored_run(evaluated: dict[str, Any]) -> None:
    report, dataset = evaluated["report"], evaluated["dataset"]
    assert [m["mode"] for m in report["modes"]] == MODES
    assert report["files"] == [str(evaluated[k]) for k in ("run", "rows", "html")]
    runs: dict[str, dict[str, list[tuple[int, float, str]]]] = defaultdict(lambda: defaultdict(list))
    for line in evaluated["run"].read_text(encoding="utf8").splitlines():
        cols = line.split()
        assert len(cols) == 6 and cols[1] == "Q0", line
        runs[cols[5]][cols[0]].append((int(cols[3]), float(cols[4]), cols[2]))
    assert list(runs) == MODES  # one tag per mode, in order
    for mode, figures in zip(MODES, report["modes"], strict=True):
        assert set(runs[mode]) == set(dataset.queries)
        for ranked in runs[mode].values():
            assert [r for r, _, _ in ranked] == list(range(1, len(ranked) + 1))  # ranks ascend from 1
            scores = [s for _, s, _ in ranked]
            assert scores == sorted(scores, reverse=True)  # a tool that sorts by score keeps our order
            assert len({d for _, _, d in ranked}) == len(ranked)
        run = {qid: [d for _, _, d in ranked] for qid, ranked in runs[mode].items()}
        assert score_run(run, dataset.qrels) == pytest.approx({k: figures[k] for k in FIGURES}, abs=1e-12)


def test_per_query_rows_average_to_the_printed_figures(evaluated: dict[str, Any]) -> None:
    report, dataset = evaluated["report"], evaluated["dataset"]
    rows = [json.loads(line) for line in evaluated["rows"].read_text(encoding="utf8").splitlines()]
    assert len(rows) == N_QUERIES * len(MODES)
    for figures in report["modes"]:
        mine = [r for r in rows if r["mode"] == figures["mode"]]
        assert [r["query_id"] for r in mine] == list(dataset.queries)
        for key in FIGURES:
            assert sum(r[key] for r in mine) / len(mine) == pytest.approx(figures[key], abs=1e-12), key
    for row in rows:
        assert row["query"] == dataset.queries[row["query_id"]]
        assert set(row["relevant_ids"]) == {d for d, g in dataset.qrels[row["query_id"]].items() if g > 0}
        assert 0 < len(row["top_ids"]) <= 10 and row["latency_ms"] > 0


def test_report_is_one_self_contained_file(evaluated: dict[str, Any]) -> None:
    text = evaluated["html"].read_text(encoding="utf8")
    lowered = text.lower()
    for needle in ("<script src", "<link", "@import", "src=\"http", "href=\"http", "url(http", "cdn"):
        assert needle not in lowered, needle
    assert lowered.count("<svg data-chart=") == 3
    assert all(f">{m}<" in text for m in MODES)  # the per-mode table and legends name every mode


class _Charts(HTMLParser):
    """Each ``svg[data-chart]`` of a DOM: its attributes and how many marks of each element it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, Any]] = {}
        self.body: dict[str, str | None] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "svg" and a.get("data-chart"):
            self._current = str(a["data-chart"])
            self.charts[self._current] = {"attrs": a, "marks": defaultdict(int)}
        elif self._current and "mark" in (a.get("class") or "").split():
            self.charts[self._current]["marks"][tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._current = None


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI; scripts/browser.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (scripts/browser.sh installs it: apt-get install -y chromium)")
    return path


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _png_pixels(data: bytes) -> np.ndarray:
    """(height, width, channels) of an 8-bit, non-interlaced PNG: zlib plus the five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk, pos = data[pos + 8:pos + 8 + length], pos + 12 + length
        header = chunk if kind == b"IHDR" else header
        idat += [chunk] if kind == b"IDAT" else []
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
    ch = 3 if color == 2 else 4
    stride = width * ch
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for r in range(height):
        kind, line = int(raw[r, 0]), raw[r, 1:].astype(np.int64)
        if kind == 1:  # Sub: a running sum along the row, per channel
            line = np.cumsum(line.reshape(width, ch), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            line = (line + prev) & 255
        elif kind in (3, 4):  # Average, Paeth: each byte needs the decoded one to its left
            cur, up = line.tolist(), prev.tolist()
            for i in range(stride):
                left = cur[i - ch] if i >= ch else 0
                corner = up[i - ch] if i >= ch else 0
                if kind == 3:
                    cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 255
                    continue
                p = left + up[i] - corner
                pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
                cur[i] = (cur[i] + (left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner)) & 255
            line = np.asarray(cur, dtype=np.int64)
        out[r], prev = line, line
    return out.reshape(height, width, ch)[:, :, :3]


def test_report_charts_render_in_headless_chromium(evaluated: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    url = evaluated["html"].resolve().as_uri()
    dom = _browse(chromium, tmp_path / "profile", "--dump-dom", url).stdout
    parsed = _Charts()
    parsed.feed(dom)
    assert parsed.body.get("data-charts-rendered") == "3/3", parsed.body  # the inline JS ran to the end
    charts = parsed.charts
    assert set(charts) == {"metrics", "scatter", "recall"}
    for name, chart in charts.items():  # every mark laid out with a non-empty box
        attrs = chart["attrs"]
        assert attrs.get("data-rendered") == "yes" and attrs["data-marks"] == attrs["data-drawn"], (name, attrs)
    assert charts["metrics"]["marks"] == {"rect": len(MODES) * len(FIGURES)}
    assert charts["scatter"]["marks"] == {"circle": N_QUERIES}  # one point per query
    assert charts["recall"]["marks"] == {"polyline": len(MODES)}  # one curve per mode

    shot = tmp_path / "report.png"
    _browse(chromium, tmp_path / "profile", "--window-size=1200,1500", f"--screenshot={shot}", url)
    pixels = _png_pixels(shot.read_bytes())
    assert pixels.shape[:2] == (1500, 1200) and pixels.std() > 10  # not a blank page
    for color in PALETTE[:len(MODES)]:  # each mode's bars and curve were painted in its colour
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert (pixels == rgb).all(axis=2).sum() > 500, color


def test_output_paths_and_modes_are_checked_before_any_work(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    def err(*argv: str) -> str:
        # The dataset folder does not exist: an error about it would mean the check came too late.
        rc = main(["eval", "--dataset", str(tmp_path / "nowhere"), "--store", "memory://", *argv])
        captured = capsys.readouterr()
        assert rc == 1 and captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1
        return captured.err

    assert "does not exist; create it" in err("--report", str(tmp_path / "missing" / "r.html"))
    assert str(tmp_path / "missing") in err("--run-file", str(tmp_path / "missing" / "{mode}.trec"))
    assert "is a folder" in err("--per-query", str(tmp_path))
    assert "same file" in err("--run-file", str(tmp_path / "a"), "--report", str(tmp_path / "a"))
    assert "hybrid+rerank" in err("--mode", "dense,fancy")
    assert "needs --reranker" in err("--mode", "dense,hybrid+rerank")
    assert "twice" in err("--mode", "dense,dense")
    assert "--evaluator pipeline" in err("--evaluator", "ir", "--mode", "dense", "--report", str(tmp_path / "r.html"))
    assert "one --mode" in err("--evaluator", "ir", "--mode", "all")
    assert not any(tmp_path.iterdir())


def test_trec_files_per_mode_and_monotone_scores() -> None:
    reranked = ModeResult("hybrid+rerank", {"q1": [("a", 3.5), ("b", -1.0), ("c", 0.03), ("d", 0.02), ("e", 0.02)]},
                          {})
    plain = ModeResult("dense", {"q1": [("c", 0.9), ("a", 0.8)]}, {})
    files = trec_files("runs/{mode}.trec", [plain, reranked])
    assert list(files) == [Path("runs/dense.trec"), Path("runs/hybrid+rerank.trec")]
    assert files[Path("runs/dense.trec")] == "q1 Q0 c 1 0.9 dense\nq1 Q0 a 2 0.8 dense\n"
    lines = [line.split() for line in files[Path("runs/hybrid+rerank.trec")].splitlines()]
    scores = [float(cols[4]) for cols in lines]
    # the fused tail drops below the reranked head as one piece: its own gaps and ties are kept
    assert [cols[2] for cols in lines] == list("abcde") and scores[:2] == [3.5, -1.0]
    assert scores == sorted(scores, reverse=True) and scores[2] < -1.0 and scores[3] == scores[4]
    assert scores[2] - scores[3] == pytest.approx(0.01)
    one = trec_files("run.trec", [plain, reranked])
    assert list(one) == [Path("run.trec")] and {line.split()[5] for line in one[Path("run.trec")].splitlines()} == \
        {"dense", "hybrid+rerank"}
    with pytest.raises(InputError, match="whitespace"):
        trec_files("run.trec", [ModeResult("dense", {"q 1": [("a", 1.0)]}, {})])
