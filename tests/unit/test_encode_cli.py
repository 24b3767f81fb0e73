"""`sdk encode`: streams its input in chunks, writes exactly where told, calibrates from a given file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdk.cli import encode as encode_cli
from sdk.cli.main import main
from sdk.encoders.dense import DenseEncoder


@pytest.fixture()
def lines(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"text number {i}" for i in range(23)) + "\n\n")
    return src


def test_output_is_written_at_the_exact_path_in_chunks(tiny_bert_dir: Path, lines: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(encode_cli, "CHUNK", 5)  # 23 texts -> 5 chunks streamed into the .npy
    out = tmp_path / "vectors"  # no .npy suffix: numpy's save(path) would write vectors.npy
    assert main(["encode", str(lines), "--model", str(tiny_bert_dir), "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(out) and report["texts"] == 23 and not (tmp_path / "vectors.npy").exists()
    saved = np.load(out)
    expected = DenseEncoder(str(tiny_bert_dir)).encode([f"text number {i}" for i in range(23)])
    np.testing.assert_allclose(saved, expected, atol=1e-5)


def test_stdin_is_streamed_too(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(encode_cli, "CHUNK", 4)
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nb\n\nc\nd\ne\n"))
    out = tmp_path / "s.npy"
    assert main(["encode", "-", "--model", str(tiny_bert_dir), "--output", str(out), "--json"]) == 0
    assert np.load(out).shape[0] == 5 and json.loads(capsys.readouterr().out)["texts"] == 5


def test_calibration_file_sets_the_int8_ranges(tiny_bert_dir: Path, lines: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    calibration = tmp_path / "calib.txt"
    calibration.write_text("a very different calibration text\nanother one about databases\n")
    out = tmp_path / "q.npy"
    assert main(["encode", str(lines), "--model", str(tiny_bert_dir), "--precision", "int8",
                 "--calibration", str(calibration), "--output", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"] == str(calibration)
    encoder = DenseEncoder(str(tiny_bert_dir))
    encoder.calibrate(["a very different calibration text", "another one about databases"])
    expected = encoder.encode([f"text number {i}" for i in range(23)], precision="int8")
    np.testing.assert_array_equal(np.load(out), expected)


def test_without_calibration_the_cli_says_where_the_ranges_came_from(tiny_bert_dir: Path, lines: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(lines), "--model", str(tiny_bert_dir), "--precision", "uint8"]) == 0
    assert "pass --calibration FILE" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing-folder", "folder", "missing-calibration", "not-utf8"])
def test_expected_failures_are_one_line_with_the_fix(case: str, tiny_bert_dir: Path, lines: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["encode", str(lines), "--model", str(tiny_bert_dir)]
    if case == "missing-folder":
        args += ["--output", str(tmp_path / "nope" / "x.npy")]
        expected = "mkdir -p"
    elif case == "folder":
        args += ["--output", str(tmp_path)]
        expected = "is a folder"
    elif case == "missing-calibration":
        args += ["--precision", "int8", "--calibration", str(tmp_path / "none.txt")]
        expected = "--calibration"
    else:
        bad = tmp_path / "latin1.txt"
        bad.write_bytes("caf\xe9\n".encode("latin1"))
        args[1] = str(bad)
        expected = "not UTF-8"
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err and "Traceback" not in err
