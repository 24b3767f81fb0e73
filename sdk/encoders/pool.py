"""Several processes encoding at once: one per GPU, or several CPU workers.

Same API as sentence-transformers: ``pool = encoder.start_multi_process_pool(["cuda:0", "cuda:1"])``,
``encoder.encode(texts, pool=pool)`` (or ``encode_multi_process``), then
``encoder.stop_multi_process_pool(pool)``. Workers are started with ``spawn`` (CUDA cannot be
forked) and receive the encoder pickled once, with its weights in shared memory; an ONNX
encoder's workers open their own onnxruntime session from the same file. Texts travel in
chunks, and results are reassembled in input order.

CPU workers split the cores between them (``torch.set_num_threads`` and onnxruntime's
intra-op threads), so two workers on two cores do not fight over four threads.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sdk.core.errors import InputError, SDKError

__all__ = ["combine", "map_chunks", "start_pool", "stop_pool"]

Pool = dict[str, Any]


def _default_devices() -> list[str]:
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * 4


def start_pool(encoder: torch.nn.Module, target_devices: Sequence[str] | None = None) -> Pool:
    """Start one worker process per entry of ``target_devices`` (default: every GPU, else 4 CPU workers)."""
    from sdk.encoders.backends.onnx import default_threads

    devices = list(target_devices) if target_devices is not None else _default_devices()
    if not devices or not all(isinstance(d, str) for d in devices):
        raise InputError(f"target_devices must be a non-empty list like ['cuda:0', 'cuda:1'] or ['cpu', 'cpu'], got {target_devices!r}")
    cpu_workers = sum(1 for d in devices if d.startswith("cpu"))
    threads = max(1, default_threads() // cpu_workers) if cpu_workers else 1
    ctx = torch.multiprocessing.get_context("spawn")
    inputs, outputs = ctx.Queue(), ctx.Queue()
    encoder.to("cpu")
    encoder.share_memory()
    processes = []
    for device in devices:
        process = ctx.Process(target=_worker, args=(device, encoder, inputs, outputs, threads), daemon=True)
        process.start()
        processes.append(process)
    return {"input": inputs, "output": outputs, "processes": processes}


def stop_pool(pool: Pool) -> None:
    """Stop the workers and close the queues; the pool cannot be used afterwards."""
    for process in pool["processes"]:
        process.terminate()
    for process in pool["processes"]:
        process.join()
        process.close()
    pool["input"].close()
    pool["output"].close()


def _worker(device: str, encoder: Any, inputs: Any, outputs: Any, threads: int) -> None:
    """Serve (chunk id, method, items, kwargs) jobs until the parent terminates us."""
    from sdk.encoders.backends.onnx import OrtModel

    if device.startswith("cpu"):
        torch.set_num_threads(threads)
        for module in encoder.modules():
            if isinstance(module, OrtModel):
                module.threads = module.threads or threads
    encoder.to(device)
    while True:
        chunk_id, method, items, kwargs = inputs.get()
        try:
            result = getattr(encoder, method)(items, **kwargs)
            outputs.put((chunk_id, _pack(result), None))
        except Exception as exc:  # sent back and re-raised in the parent
            outputs.put((chunk_id, None, f"{type(exc).__name__}: {exc}"))


class _SparseCOO(tuple):
    """A sparse COO tensor as its parts for the queue: torch's own sparse pickling rebuilds it
    without invariant checks and warns about that in the parent on every chunk."""


def _pack(result: Any) -> Any:
    if isinstance(result, torch.Tensor) and result.layout == torch.sparse_coo:
        result = result.coalesce()
        return _SparseCOO((result.indices(), result.values(), tuple(result.shape)))
    return result


def _unpack(result: Any) -> Any:
    if isinstance(result, _SparseCOO):
        indices, values, shape = result
        return torch.sparse_coo_tensor(indices, values, shape, is_coalesced=True, check_invariants=True)
    return result


def map_chunks(pool: Pool, method: str, items: Sequence[Any], chunk_size: int | None, kwargs: dict[str, Any]) -> list[Any]:
    """Run ``encoder.<method>(chunk, **kwargs)`` over chunks in the pool; per-chunk results in order."""
    if not isinstance(pool, dict) or not {"input", "output", "processes"} <= set(pool):
        raise InputError("pool must be the dict returned by start_multi_process_pool()")
    workers = len(pool["processes"])
    if chunk_size is None:
        chunk_size = max(1, min(-(-len(items) // (workers * 10)), 5000))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunks = [list(items[s : s + chunk_size]) for s in range(0, len(items), chunk_size)]
    for i, chunk in enumerate(chunks):
        pool["input"].put((i, method, chunk, kwargs))
    results: dict[int, Any] = {}
    errors: list[str] = []
    while len(results) + len(errors) < len(chunks):
        try:
            chunk_id, result, error = pool["output"].get(timeout=1.0)
        except queue.Empty:
            dead = [p for p in pool["processes"] if not p.is_alive()]
            if dead:
                raise SDKError(
                    f"{len(dead)} pool worker(s) died (exit code {dead[0].exitcode}); "
                    "stop the pool and start a new one"
                ) from None
            continue
        if error is not None:
            errors.append(error)
        else:
            results[chunk_id] = _unpack(result)
    if errors:
        raise SDKError(f"a pool worker failed: {errors[0]}")
    return [results[i] for i in range(len(chunks))]


def combine(parts: list[Any]) -> Any:
    """Join per-chunk results: arrays and tensors are concatenated, lists chained."""
    if not parts:
        return []
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, torch.Tensor):
        joined = torch.cat(parts)
        return joined.coalesce() if joined.layout == torch.sparse_coo else joined  # as a local encode gives
    return [row for part in parts for row in part]
