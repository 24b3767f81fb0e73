"""Milvus adapter against the conformance suite (Milvus Lite 2.5.1 unless SDK_TEST_MILVUS_URL names a server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import connect
from adapters.base import Adapter, CollectionSpec, DenseField, SparseField
from adapters.milvus import MilvusAdapter
from adapters.retry import RetryPolicy
from adapters.testing import DIM, PAYLOAD, AdapterConformance, make_records
from sdk.core.errors import TransientAdapterError


class TestMilvusConformance(AdapterConformance):
    score_rel = 2e-4
    score_abs = 2e-4

    @pytest.fixture
    def adapter(self, milvus_url: str) -> Iterator[Adapter]:
        with connect(milvus_url) as adapter:
            yield adapter

    def create_foreign(self, db: Any, name: str) -> Any:
        db._client.create_collection(name, dimension=4)
        return lambda: db._client.drop_collection(name)


# ---- a real fault: the Milvus Lite engine process is killed in the middle of an upsert ----------
def _lite_server(path: Path) -> Any:
    from milvus_lite.server_manager import server_manager_instance

    return server_manager_instance._servers[str(path.absolute().resolve())]


@pytest.mark.milvus
def test_engine_killed_mid_upsert_then_rerun_leaves_one_copy(tmp_path: Path, milvus_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL the embedded engine while batch 3 is in flight: the upsert fails cleanly (after the bounded
    retries) with a TransientAdapterError, and re-running it on a restarted engine leaves each record once."""
    if not milvus_url.startswith("milvus+lite:"):
        pytest.skip("killing the engine needs the embedded Milvus Lite process (a server is not ours to kill)")
    from milvus_lite.server_manager import server_manager_instance

    path = tmp_path / "fault.db"
    records = make_records(300, sparse=True)
    spec = CollectionSpec("fault", dense=(DenseField("dense", DIM),), sparse=(SparseField("sparse"),),
                          payload=PAYLOAD, encoder="enc-v1")
    db = MilvusAdapter(uri=str(path))
    db.retry_policy = RetryPolicy(attempts=3, budget_s=5.0, initial_wait_s=0.05, max_wait_s=0.2)
    db.ensure_collection(spec)
    real, calls = db._upsert_batch, {"n": 0}
    engine = _lite_server(path)._p

    def killing(s, name, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            threading.Timer(0.002, engine.kill).start()  # dies while this batch's RPC is running
        return real(s, name, batch)

    monkeypatch.setattr(db, "_upsert_batch", killing)
    with pytest.raises(TransientAdapterError) as info:
        db.upsert("fault", records, batch_size=50)
    assert info.value.__cause__ is not None  # translated from the driver error, which stays attached
    engine.wait(5)
    db.close()  # drops the client's channel to the dead engine
    server_manager_instance.release_server(str(path))  # forget the dead process; the next client restarts it

    with MilvusAdapter(uri=str(path)) as again:
        assert again.describe("fault") == spec  # the spec survived in the engine's own storage
        again.upsert("fault", records, batch_size=50)
        assert again.count("fault") == len(records)
        assert {r.id for r in again.get("fault", [r.id for r in records])} == {r.id for r in records}
        again.upsert("fault", records, batch_size=50)
        assert again.count("fault") == len(records)


@pytest.mark.milvus
def test_adapter_over_a_client_the_caller_holds(tmp_path: Path) -> None:
    """``MilvusAdapter(client=..., lite=True)`` uses the caller's client and leaves it open on close()."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "held.db"))
    spec = CollectionSpec("held", dense=(DenseField("dense", 4),))
    with MilvusAdapter(client=client, lite=True) as db:
        assert db.capabilities.aliases and "aliases" in db.capabilities.emulated  # the Lite registry
        db.ensure_collection(spec)
        db.upsert("held", make_records(3, dim=4, sparse=False))
    assert client.query("held", filter="", output_fields=["count(*)"])[0]["count(*)"] == 3
    assert spec.to_json() in client.describe_collection("held")["description"]
    client.close()


@pytest.mark.milvus
def test_ivf_flat_index_and_hnsw_capability(milvus_url: str) -> None:
    """IVF_FLAT with nprobe == nlist scans every list, so it equals the exact answer; HNSW is server-only."""
    from adapters.base import IndexParams
    from adapters.memory import MemoryAdapter
    from sdk.core.errors import CapabilityError
    from sdk.core.types import HybridQuery

    ivf = CollectionSpec("ivf_check", dense=(DenseField("dense", DIM, index=IndexParams("ivf_flat", nlist=4, nprobe=4)),))
    with connect(milvus_url) as db, MemoryAdapter() as ref:
        db.drop("ivf_check")
        db.ensure_collection(ivf)
        ref.ensure_collection(ivf)
        records = make_records(200, sparse=False)
        db.upsert("ivf_check", records)
        ref.upsert("ivf_check", records)
        q = HybridQuery(dense=records[3].vectors["dense"], limit=10)
        assert [h.id for h in db.query("ivf_check", q)] == [h.id for h in ref.query("ivf_check", q)]
        db.drop("ivf_check")
        hnsw = CollectionSpec("hnsw_check", dense=(DenseField("dense", DIM, index=IndexParams("hnsw")),))
        if "hnsw" in db.capabilities.index_kinds:
            db.ensure_collection(hnsw)
            db.drop("hnsw_check")
        else:
            with pytest.raises(CapabilityError, match="hnsw"):
                db.ensure_collection(hnsw)
