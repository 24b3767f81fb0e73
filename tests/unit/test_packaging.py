"""The installed import packages are this project's, not PyPI's unrelated `sdk` / `adapters`."""

from __future__ import annotations

import shutil
from pathlib import Path

import adapters
import sdk

REPO = Path(__file__).resolve().parents[2]


def test_import_packages_resolve_inside_this_project() -> None:
    assert Path(sdk.__file__).resolve().is_relative_to(REPO / "sdk")
    assert Path(adapters.__file__).resolve().is_relative_to(REPO / "adapters")


def test_typed_markers_and_console_script() -> None:
    assert (REPO / "sdk" / "py.typed").is_file()
    assert (REPO / "adapters" / "py.typed").is_file()
    assert shutil.which("sdk") is not None or (Path(__import__("sys").executable).parent / "sdk").exists()


def test_import_sdk_is_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, sdk; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
