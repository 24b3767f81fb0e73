"""How an encoder is loaded: one options object and one load step for all three encoder classes.

DenseEncoder, SparseEncoder and CrossEncoder take the same loading arguments (those of
sentence-transformers' constructors, which callers pass by keyword): where the model comes
from (``cache_folder``, ``revision``, ``token``, ``local_files_only``), what transformers may
do (``trust_remote_code``, ``allow_pickle``, ``model_kwargs``, ``tokenizer_kwargs``,
``config_kwargs``), which backend runs it and on which device. ``LoadOptions.create`` checks
and splits them once (backend options out of ``model_kwargs``), and ``load_stack`` is the one
"load a folder or hub id, or take the caller's modules" branch every encoder goes through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdk.core.errors import InputError
from sdk.encoders.backends import BackendOptions, apply_backend, split_model_kwargs
from sdk.encoders.loading import LoadedModel, load_model_folder
from sdk.encoders.modules import EncoderModule

__all__ = ["LoadOptions", "load_stack"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(kwargs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(kwargs)) if kwargs else _EMPTY


@dataclass(frozen=True)
class LoadOptions:
    """The loading arguments the three encoder classes share, checked once.

    ``model_kwargs`` holds only what reaches transformers' ``from_pretrained`` (backend options
    such as ``quantize`` or ``torch_dtype`` are parsed into ``backend``). The kwargs mappings are
    read-only copies: every load gets fresh dicts from ``module_kwargs``.
    """

    #: the encoder class being loaded, for error messages
    owner: str = "encoder"
    backend: BackendOptions = field(default_factory=BackendOptions)
    #: where the loaded stack is placed (None: CUDA, else Apple MPS, else CPU)
    device: Any = None
    cache_folder: str | None = None
    revision: str | None = None
    token: bool | str | None = field(default=None, repr=False)  # a hub token stays out of logs
    local_files_only: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    model_kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    tokenizer_kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    config_kwargs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def create(
        cls,
        owner: str,
        *,
        backend: str = "torch",
        device: Any = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: bool | str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
    ) -> LoadOptions:
        """Options from an encoder constructor's keyword arguments (``owner``: its class name, for errors)."""
        transformers_kwargs, backend_options = split_model_kwargs(backend, model_kwargs, owner)
        return cls(
            owner=owner, backend=backend_options, device=device, cache_folder=cache_folder, revision=revision, token=token,
            local_files_only=local_files_only, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
            model_kwargs=_frozen(transformers_kwargs), tokenizer_kwargs=_frozen(tokenizer_kwargs),
            config_kwargs=_frozen(config_kwargs),
        )

    def with_config(self, **config_kwargs: Any) -> LoadOptions:
        """A copy whose ``config_kwargs`` also hold ``config_kwargs`` (these win)."""
        return dataclasses.replace(self, config_kwargs=_frozen({**self.config_kwargs, **config_kwargs}))

    def hub_kwargs(self) -> dict[str, Any]:
        """What ``resolve_model_path`` takes: where to find the folder and whether pickle weights may come."""
        return {"cache_folder": self.cache_folder, "revision": self.revision, "token": self.token,
                "local_files_only": self.local_files_only, "allow_pickle": self.allow_pickle}

    def module_kwargs(self) -> dict[str, Any]:
        """What every module's ``load`` takes (fresh dicts: a module may adjust its own)."""
        return {
            "trust_remote_code": self.trust_remote_code,
            "model_kwargs": dict(self.model_kwargs),
            "tokenizer_kwargs": dict(self.tokenizer_kwargs),
            "config_kwargs": dict(self.config_kwargs),
        }


def load_stack(
    model_name_or_path: str | Path | None,
    modules: Sequence[EncoderModule] | None,
    options: LoadOptions,
    *,
    default_model: Callable[[], str] | None = None,
    bare_loader: Callable[..., list[tuple[str, EncoderModule]]] | None = None,
    check: Callable[[LoadedModel], None] | None = None,
) -> LoadedModel:
    """The encoder's module stack, ready for ``options.backend``: loaded from a folder or hub id
    (``default_model()`` when none is named), or the caller's ``modules`` as given.

    ``bare_loader`` builds the stack of a folder without ``modules.json``; ``check`` sees the
    loaded stack before the backend is applied (an encoder refusing modules it cannot run).
    The result's ``path`` is None and its ``config`` empty for the caller's modules.
    """
    if modules is None:
        if model_name_or_path is None:
            if default_model is None:
                raise InputError(f"{options.owner} needs a model folder or hub id (model_name_or_path)")
            model_name_or_path = default_model()
        model = load_model_folder(
            model_name_or_path, bare_loader=bare_loader, **options.hub_kwargs(), **options.module_kwargs()
        )
    else:
        if model_name_or_path is not None:
            raise InputError("pass either model_name_or_path or modules, not both")
        model = LoadedModel(None, list(modules), {})
    if check is not None:
        check(model)
    return dataclasses.replace(model, modules=apply_backend(model.modules, options.backend, device=options.device))
