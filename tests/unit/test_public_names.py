"""Public names: the top-level exports, and the old names kept as deprecated aliases after the renames."""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import pytest

import sdk
from sdk.core.capabilities import Capabilities
from sdk.core.errors import InputError, SimilarityMismatchError
from sdk.core.similarity import Similarity
from sdk.core.spec import CollectionSpec, DenseField


def test_errors_and_filters_at_the_top_level() -> None:
    import sdk.core.errors as errors
    import sdk.core.types as types

    for name in set(errors.__all__) - {"MetricMismatchError"}:  # the deprecated alias stays off the top
        assert getattr(sdk, name) is getattr(errors, name)
    for name in ("Filter", "Eq", "In", "Range", "And", "Or", "Not", "Document", "Record", "HybridQuery"):
        assert getattr(sdk, name) is getattr(types, name)
    assert sdk.connect is importlib.import_module("sdk.core.registry").connect
    assert {"InputError", "Eq", "CollectionSpec", "VectorStore", "connect"} <= set(sdk.__all__)
    with pytest.raises(AttributeError):
        sdk.NoSuchName  # noqa: B018


def test_sdk_errors_and_types_stay_importable() -> None:
    from sdk.errors import InputError as OldInputError
    from sdk.types import Eq as OldEq

    assert OldInputError is InputError and OldEq is sdk.Eq


def test_sdk_metrics_is_a_deprecated_alias_of_the_similarity_module() -> None:
    sys.modules.pop("sdk.metrics", None)
    with pytest.warns(DeprecationWarning, match="sdk.core.similarity"):
        old = importlib.import_module("sdk.metrics")
    assert old.Similarity is Similarity


def test_storage_is_the_field_word_and_precision_still_works() -> None:
    new = DenseField("v", 8, "dot", "int8")
    assert new.storage == "int8"
    with pytest.warns(DeprecationWarning, match="storage"):
        old = DenseField("v", 8, "dot", precision="int8")
    assert old == new
    with pytest.warns(DeprecationWarning):
        assert new.precision == "int8"
    with pytest.raises(InputError, match="unknown storage type"):
        DenseField("v", 8, storage="int4")  # type: ignore[arg-type]


def test_specs_stored_before_the_rename_still_read() -> None:
    spec = CollectionSpec("c", dense=(DenseField("v", 8, "dot", "int8"),))
    data = json.loads(spec.to_json())
    assert data["dense"][0]["storage"] == "int8"
    data["dense"][0]["precision"] = data["dense"][0].pop("storage")  # how 0.1 wrote it
    assert CollectionSpec.from_dict(data) == spec


def test_capabilities_similarities_and_old_names() -> None:
    caps = Capabilities("db", similarities={"float32": {"cosine"}, "binary": {"hamming"}})
    assert caps.storage_types == {"float32", "binary"}
    assert caps.supports("float32", "cosine") and not caps.supports("binary", "cosine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert caps.similarities["float32"] == {Similarity.COSINE}
    with pytest.warns(DeprecationWarning):
        assert caps.metrics is caps.similarities
    with pytest.warns(DeprecationWarning):
        assert caps.precisions == caps.storage_types
    assert not hasattr(caps, "async_api")


def test_metric_mismatch_is_the_old_name_of_similarity_mismatch() -> None:
    from sdk.errors import MetricMismatchError

    assert MetricMismatchError is SimilarityMismatchError
