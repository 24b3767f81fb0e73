"""Safe weight files: safetensors by default, pickle only when the caller asks for it.

``torch.load`` of an untrusted ``pytorch_model.bin`` can run arbitrary code, so a
folder that only has pickle weights is refused unless ``allow_pickle=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sdk.core.errors import ModelLoadError

__all__ = [
    "PICKLE_FILE",
    "SAFETENSORS_FILE",
    "has_pickle_only",
    "has_torch_weights",
    "is_weightless",
    "load_state_dict",
    "onnx_files",
    "save_state_dict",
]

SAFETENSORS_FILE = "model.safetensors"
PICKLE_FILE = "pytorch_model.bin"


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()


def _has_pickle(folder: Path) -> bool:
    return any(folder.glob("pytorch_model*.bin"))


def has_pickle_only(folder: Path) -> bool:
    """True when ``folder`` has pickle weights and no safetensors weights at all."""
    return _has_pickle(folder) and not _has_safetensors(folder)


def has_torch_weights(folder: Path) -> bool:
    """True when ``folder`` has transformers weights of any format (safetensors, sharded, pickle)."""
    return _has_safetensors(folder) or _has_pickle(folder)


def is_weightless(model: torch.nn.Module) -> bool:
    """True for the meta-device skeleton that stands in for the weights of an ONNX-only folder."""
    return any(p.is_meta for p in model.parameters())


def onnx_files(folder: Path) -> list[Path]:
    """ONNX graphs shipped with a model: ``onnx/*.onnx`` (sentence-transformers' layout) or top level."""
    return sorted(folder.glob("onnx/*.onnx")) + sorted(folder.glob("*.onnx"))


def pickle_refused(folder: Path) -> ModelLoadError:
    return ModelLoadError(
        f"{folder} holds only pickle weights (pytorch_model.bin), which can execute code when loaded; "
        "convert them to safetensors, or pass allow_pickle=True if you trust this folder"
    )


def load_state_dict(folder: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load a module's own weights from ``folder``."""
    safe = folder / SAFETENSORS_FILE
    if safe.exists():
        return load_file(str(safe))
    pickle = folder / PICKLE_FILE
    if pickle.exists():
        if not allow_pickle:
            raise pickle_refused(folder)
        return torch.load(pickle, map_location="cpu", weights_only=True)
    raise ModelLoadError(f"no weights in {folder}: expected {SAFETENSORS_FILE}")


def save_state_dict(state: dict[str, torch.Tensor], folder: Path) -> None:
    """Write weights as safetensors (contiguous copies: safetensors refuses views)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(folder / SAFETENSORS_FILE))
