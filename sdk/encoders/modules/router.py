"""Different module lists for queries and documents (asymmetric and inference-free models).

The route is chosen by the task an encoder passes (``"query"`` from ``encode_query``,
``"document"`` from ``encode_document``), falling back to a default route. Saved like
sentence-transformers' Router: ``router_config.json`` with the module types, each route's
module ids, and the routing parameters, plus one sub-folder per module.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from sdk.core.errors import InputError, ModelLoadError
from sdk.encoders.modules.base import EncoderModule

__all__ = ["Router"]

RouteKey = tuple[str | None, str | None]


class Router(EncoderModule):
    """Sends each batch through the module list of the route its task selects."""

    st_type: ClassVar[str] = "sentence_transformers.base.modules.router.Router"
    config_file: ClassVar[str] = "router_config.json"

    def __init__(
        self,
        sub_modules: Mapping[str, Sequence[EncoderModule]],
        default_route: str | None = None,
        allow_empty_key: bool = True,
        route_mappings: Mapping[RouteKey, str] | None = None,
    ) -> None:
        super().__init__()
        if not sub_modules or any(not mods for mods in sub_modules.values()):
            raise InputError("Router needs at least one route, and every route at least one module")
        if default_route is not None and default_route not in sub_modules:
            raise InputError(f"default_route {default_route!r} is not one of the routes {list(sub_modules)}")
        mappings = dict(route_mappings or {})
        missing = sorted({r for r in mappings.values() if r not in sub_modules})
        if missing:
            raise InputError(f"route_mappings point at unknown routes {missing}; routes are {list(sub_modules)}")
        self.sub_modules = nn.ModuleDict({name: nn.Sequential(*mods) for name, mods in sub_modules.items()})
        if default_route is None and allow_empty_key:
            default_route = next(iter(sub_modules))
        self.default_route = default_route
        self.allow_empty_key = allow_empty_key
        self.route_mappings: dict[RouteKey, str] = mappings

    @classmethod
    def for_query_document(
        cls,
        query_modules: Sequence[EncoderModule],
        document_modules: Sequence[EncoderModule],
        default_route: str | None = "document",
        allow_empty_key: bool = True,
    ) -> Router:
        """A "query" route and a "document" route; plain ``encode`` uses ``default_route``."""
        return cls({"query": query_modules, "document": document_modules}, default_route, allow_empty_key)

    # -- routing ----------------------------------------------------------------------------

    def route(self, task: str | None = None) -> str:
        """The route name for ``task`` (text inputs only: the modality is always "text")."""
        for key in ((task, "text"), (task, None), (None, "text"), (None, None)):
            if key in self.route_mappings:
                return self.route_mappings[key]
        if task is not None and task in self.sub_modules:
            return task
        if "text" in self.sub_modules:
            return "text"
        if task is not None:
            raise InputError(f"no route for task {task!r}; this Router has routes {list(self.sub_modules)}")
        if self.default_route is None:
            raise InputError(
                f"this Router has no default route; call encode_query / encode_document or pass task= "
                f"one of {list(self.sub_modules)}"
            )
        return self.default_route

    def input_module(self, task: str | None = None) -> nn.Module:
        return self.sub_modules[self.route(task)][0]

    def tokenize(self, texts: Sequence[str], task: str | None = None) -> dict[str, torch.Tensor]:
        """Tokenize with the first module of the route (each route may have its own tokenizer)."""
        return self.input_module(task).tokenize(texts)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        for module in self.sub_modules[self.route(features.get("task"))]:
            features = module(features)
        return features

    @property
    def tokenizer(self) -> Any:
        for route in self.sub_modules.values():
            tokenizer = getattr(route[0], "tokenizer", None)
            if tokenizer is not None:
                return tokenizer
        return None

    def get_sentence_embedding_dimension(self) -> int | None:
        for route in self.sub_modules.values():
            for module in reversed(list(route)):
                getter = getattr(module, "get_sentence_embedding_dimension", None)
                if getter is not None and getter() is not None:
                    return int(getter())
        return None

    # -- saving / loading -------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "default_route": self.default_route,
            "allow_empty_key": self.allow_empty_key,
            "route_mappings": {str(key): route for key, route in self.route_mappings.items()},
        }

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        ids: dict[int, str] = {}
        types: dict[str, str] = {}
        structure: dict[str, list[str]] = {}
        for name, route in self.sub_modules.items():
            structure[name] = []
            for idx, module in enumerate(route):
                if not isinstance(module, EncoderModule):
                    raise InputError(f"route {name!r} module {idx} ({type(module).__name__}) cannot be saved")
                if id(module) not in ids:  # a module shared by two routes is saved once
                    module_id = f"{name}_{idx}_{type(module).__name__}"
                    ids[id(module)] = module_id
                    types[module_id] = module.st_type
                    module.save(folder / module_id)
                structure[name].append(ids[id(module)])
        manifest = {"types": types, "structure": structure, "parameters": self.get_config()}
        with open(folder / self.config_file, "w", encoding="utf8") as fh:
            json.dump(manifest, fh, indent=2)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Router:
        from sdk.encoders.modules import module_class

        folder = Path(path)
        config_path = folder / cls.config_file
        if not config_path.exists():
            config_path = folder / "config.json"  # older sentence-transformers (Asym) name
        try:
            config = json.loads(config_path.read_text(encoding="utf8"))
            types, structure = config["types"], config["structure"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ModelLoadError(f"cannot read the Router config in {folder}: {exc}") from exc
        modules: dict[str, EncoderModule] = {}
        for module_id, type_path in types.items():
            sub = (folder / module_id).resolve()
            if folder.resolve() not in sub.parents:
                raise ModelLoadError(f"Router module path {module_id!r} leaves the model folder {folder}")
            modules[module_id] = module_class(type_path).load(sub, **kwargs)
        params = dict(config.get("parameters") or {})
        mappings: dict[RouteKey, str] = {}
        for key, route in (params.pop("route_mappings", None) or {}).items():
            try:
                parsed = ast.literal_eval(key)
            except (ValueError, SyntaxError) as exc:
                raise ModelLoadError(f"{config_path}: route mapping key {key!r} is not a (task, modality) pair") from exc
            mappings[tuple(parsed)] = route  # type: ignore[assignment]
        known = {k: params[k] for k in ("default_route", "allow_empty_key") if k in params}
        routes = {name: [modules[m] for m in ids] for name, ids in structure.items()}
        return cls(routes, route_mappings=mappings, **known)
