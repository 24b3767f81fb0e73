"""The floor plan holds: imports point down the layers of docs/ARCHITECTURE.md and never up.

    sdk.cli                                  the `sdk` command
    sdk.sync                                 keeps a collection equal to a source (uses the pipeline)
    sdk.retrieval | sdk.evaluation           pipelines on top of encoders and stores
    sdk.encoders  | adapters | sdk.feedback  models; databases; feedback capture (independent of each other)
    sdk.quantization, sdk.util               numeric helpers of the encoders
    sdk.core                                 values, errors, similarity, spec, fusion, registry

Read from the source with ``ast`` (every import, including lazy ones inside functions), so an
arrow that breaks the layering fails here with the file and line, before anyone builds on it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (layer rank, group). Higher ranks may import lower ones; equal ranks only within one group.
LAYERS: dict[str, tuple[int, str]] = {
    "sdk.core": (0, "core"),
    "sdk.quantization": (1, "numeric"),
    "sdk.util": (1, "numeric"),
    "sdk.encoders": (2, "encoders"),
    "adapters": (2, "adapters"),
    "sdk.feedback": (2, "feedback"),
    "sdk.retrieval": (3, "retrieval"),
    "sdk.evaluation": (3, "evaluation"),
    "sdk.sync": (4, "sync"),
    "sdk.training": (4, "training"),
    "sdk.learning": (5, "learning"),
    "sdk.cli": (6, "cli"),
}
# Public facades that only re-export the core under their historical names.
FACADES = {"sdk.errors", "sdk.types", "sdk.metrics"}
# Sibling groups that may import each other even though they share a rank.
ALLOWED_SIBLINGS = {("numeric", "numeric")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> tuple[int, str] | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return best[1] if best else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf8"), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # `from pkg import submodule` is an import of pkg.submodule
            out.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append((node.lineno, arg.value))
    return out


def _sources() -> list[Path]:
    return sorted(p for top in ("sdk", "adapters") for p in (ROOT / top).rglob("*.py"))


def _is_project(module: str) -> bool:
    return module == "sdk" or module.startswith(("sdk.", "adapters"))


def _violations() -> list[str]:
    found: list[str] = []
    for path in _sources():
        me = _module_name(path)
        if me == "sdk":  # the package root maps public names lazily; nothing imports it back
            continue
        mine = _layer(me)
        rel = path.relative_to(ROOT)
        seen: set[int] = set()
        for line, target in _imports(path):
            if not _is_project(target) or target.startswith(me + ".") or target == me or line in seen:
                continue
            seen.add(line)  # one report per import statement
            where = f"{rel}:{line} imports {target}"
            if target == "sdk" or (target.startswith("sdk.") and target.count(".") == 1
                                   and target.split(".")[1][:1].isupper()):
                found.append(f"{where}: nothing inside the packages imports the root `sdk` (an arrow climbing up)")
                continue
            if me in FACADES:
                if not target.startswith("sdk.core"):
                    found.append(f"{where}: a facade re-exports the core only")
                continue
            theirs = _layer(target)
            if theirs is None:
                if target.split(".")[:2] == ["sdk", "core"] or target in FACADES or target.startswith(tuple(
                        f"{f}." for f in FACADES)):
                    found.append(f"{where}: import from sdk.core, not the facade")
                continue
            if mine is None:
                found.append(f"{rel} is in no layer: add its package to LAYERS in tests/unit/test_layers.py")
                break
            if me.startswith("sdk.") and target.startswith("adapters"):
                found.append(f"{where}: sdk reaches databases only through sdk.core.registry / sdk.core.store")
            elif theirs[0] > mine[0]:
                found.append(f"{where}: {mine[1]} (layer {mine[0]}) may not import {theirs[1]} (layer {theirs[0]})")
            elif theirs[0] == mine[0] and theirs[1] != mine[1] and (mine[1], theirs[1]) not in ALLOWED_SIBLINGS:
                found.append(f"{where}: {mine[1]} and {theirs[1]} are independent siblings")
    return found


def test_imports_point_down_the_layers() -> None:
    """Failure: a module imports a higher layer or an independent sibling; move the shared piece down."""
    assert _violations() == []


def test_database_subpackages_use_only_the_public_kit() -> None:
    """Failure: an adapter imports a private (``_``) module of another package; use the public kit."""
    bad = []
    for path in sorted((ROOT / "adapters").glob("*/*.py")):
        own = ".".join(["adapters", path.parent.name])
        if path.parent.name == "testing":
            continue
        for line, target in _imports(path):
            if target.startswith(own + ".") or not _is_project(target):
                continue
            if any(part.startswith("_") for part in target.split(".")):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert bad == []


def test_every_module_has_a_layer() -> None:
    """Failure: a new package was added without a place in the floor plan."""
    lost = [str(p.relative_to(ROOT)) for p in _sources()
            if _module_name(p) not in {"sdk", *FACADES} and _layer(_module_name(p)) is None]
    assert lost == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward arrow and a lazy adapters import are both reported."""
    fake = ROOT / "sdk" / "core" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from sdk.retrieval import pipeline\n    import adapters.memory\n", encoding="utf8")
    try:
        found = "\n".join(_violations())
    finally:
        fake.unlink()
    assert "_layer_probe_tmp.py:2 imports sdk.retrieval" in found
    assert "_layer_probe_tmp.py:3 imports adapters.memory" in found


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_pipeline_imports_without_adapters() -> None:
    """With `adapters` blocked, the pipeline, evaluation and CLI import; adapters load only on connect."""
    proc = _run("""
        import sys
        from importlib.abc import MetaPathFinder

        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "adapters" or name.startswith("adapters."):
                    raise ImportError(f"blocked: {name}")
                return None

        for name in [m for m in sys.modules if m == "adapters" or m.startswith("adapters.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, Block())
        import sdk.retrieval.pipeline, sdk.retrieval, sdk.evaluation, sdk.cli.main  # noqa: E401
        from sdk import RetrievalPipeline, Filter, Eq, InputError, CollectionSpec  # noqa: F401
        assert not [m for m in sys.modules if m.startswith("adapters")], "adapters was imported"
        sys.meta_path.pop(0)
        from sdk.retrieval.pipeline import resolve_store
        store, owned = resolve_store("memory://")
        assert owned and type(store).__module__ == "adapters.memory.adapter"
        drivers = {"qdrant_client", "pymilvus", "weaviate", "psycopg"} & set(sys.modules)
        assert not drivers, f"connecting memory:// imported drivers {drivers}"
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_core_is_light() -> None:
    """The ground floor imports no torch, transformers or database driver."""
    proc = _run("""
        import sys
        import sdk.core.capabilities, sdk.core.errors, sdk.core.fusion, sdk.core.progress  # noqa: E401
        import sdk.core.registry, sdk.core.similarity, sdk.core.spec, sdk.core.store, sdk.core.types  # noqa: E401
        heavy = {"torch", "transformers", "qdrant_client", "pymilvus", "weaviate", "psycopg", "adapters"}
        print(sorted(heavy & set(sys.modules)))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("scheme", ["memory", "qdrant", "qdrant+local", "milvus", "milvus+lite", "weaviate",
                                    "weaviates", "postgresql", "postgres"])
def test_schemes_are_registered_as_entry_points(scheme: str) -> None:
    """Failure: the package metadata is stale (re-run `pip install -e .`) or pyproject lost a scheme."""
    from sdk.core.registry import schemes

    assert scheme in schemes()
