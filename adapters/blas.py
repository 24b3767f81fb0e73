"""One BLAS thread for the vector math of the stores that search inside this process.

The in-memory reference and Qdrant local mode score a query with numpy: a matrix-vector product
over every stored vector. numpy's OpenBLAS splits such a product over its thread pool, whose
workers then spin waiting for more work on the cores that the query encoder (torch's own OpenMP
pool) and the next request need. On 2 shared cores one 5,000 x 384 product took 16 ms on two
BLAS threads and 2 ms on one, and a search that alternates encoding and scoring ran about twice
as long as its two stages timed alone (issue 18, bench/latency.py). A product of one vector is
memory-bound and gains little from more threads anyway.

OpenBLAS has one thread setting for the whole process (``openblas_set_num_threads_local`` too,
despite its name), so the limit is held while any in-process search runs and the setting found
by the first one comes back when the last one ends; BLAS work elsewhere in the process meanwhile
runs on one thread as well. numpy on another BLAS (MKL), or without ``threadpoolctl`` to find the
loaded library, is left alone.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_state: dict[str, Any] = {"setters": None, "depth": 0, "previous": []}


def _lookup() -> list[Callable[[int], int]]:
    """``openblas_set_num_threads_local`` (sets, returns the previous count) of each OpenBLAS loaded now."""
    try:
        from threadpoolctl import threadpool_info

        libraries = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    except Exception:  # noqa: BLE001 - not installed, or a library it cannot read: leave BLAS alone
        return []
    setters: list[Callable[[int], int]] = []
    for info in libraries:
        try:
            setter = ctypes.CDLL(info["filepath"]).openblas_set_num_threads_local
        except (OSError, AttributeError, KeyError):  # an OpenBLAS older than 0.3.22
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        setters.append(setter)
    return setters


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with OpenBLAS on one thread (blocks running at once share the one limit)."""
    with _lock:
        if _state["setters"] is None:
            _state["setters"] = _lookup()
        if _state["depth"] == 0:
            _state["previous"] = [setter(1) for setter in _state["setters"]]
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for setter, count in zip(_state["setters"], _state["previous"], strict=True):
                    setter(count)
