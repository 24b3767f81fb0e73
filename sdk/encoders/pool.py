"""Several processes encoding at once: one per GPU, or several CPU workers.

Same API as sentence-transformers: ``pool = encoder.start_multi_process_pool(["cuda:0", "cuda:1"])``,
``encoder.encode(texts, pool=pool)`` (or ``encode_multi_process``), then
``encoder.stop_multi_process_pool(pool)``. Workers are started with ``spawn`` (CUDA cannot be
forked) and receive the encoder pickled once, with its weights in shared memory; an ONNX
encoder's workers open their own onnxruntime session from the same file. Texts travel in
chunks, and results are reassembled in input order.

A plain pair of queues attaches vectors to the wrong texts as soon as a call is cut short, so:

- every chunk and every result carries a job id. The pool serves one job at a time (a lock: two
  threads sharing a pool each get their own vectors); workers skip the chunks of a job that is no
  longer current (interrupted by Ctrl-C, or failed) and late results of such jobs are dropped;
- one receiver thread reads the result queue, never the caller's thread: a KeyboardInterrupt in
  the middle of reading a large result would leave half a message in the pipe;
- a worker that died (killed, out of memory) breaks the pool: calls raise at once, naming the
  fix, instead of waiting forever for its chunk. Workers ignore SIGINT (Ctrl-C in a terminal
  reaches the whole process group; the caller decides) and leave when their parent is gone;
- stopping is idempotent and bounded (terminate, join with a timeout, then kill), runs at exit
  for pools nobody stopped, and queues never join their feeder threads at exit (a full pipe to
  workers that are gone hangs the interpreter).

CPU workers split the CPUs this process may use (affinity and cgroup quota, not the host's core
count) between them: ``torch.set_num_threads`` and onnxruntime's intra-op threads.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdk.core import errors
from sdk.core.errors import InputError, SDKError

__all__ = ["available_cpus", "cgroup_cpu_limit", "combine", "map_chunks", "start_pool", "stop_pool"]

Pool = dict[str, Any]

POLL_S = 0.5  # how often a waiting caller checks that the workers are still alive
STOP_TIMEOUT_S = 5.0  # how long stop_pool waits for terminated workers before killing them

_LIVE: dict[int, Pool] = {}  # pools not stopped yet; stopped at interpreter exit
_LIVE_LOCK = threading.Lock()


# -- how many CPUs ----------------------------------------------------------------------------


def _quota_v2(folder: Path) -> float | None:
    quota, period = (folder / "cpu.max").read_text().split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text())
    period = int((folder / "cpu.cfs_period_us").read_text())
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """CPUs a cgroup CPU quota allows (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, the tightest of
    this cgroup and its ancestors, rounded up); None without a quota.

    Containers often see every host core in their affinity mask and are throttled to a few."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            bases, reader = [root], _quota_v2
        elif "cpu" in controllers.split(","):
            bases, reader = [root / controllers, root / "cpu"], _quota_v1
        else:
            continue
        relative = Path(path.lstrip("/"))
        for base in bases:
            for folder in [base / relative, *(base / p for p in relative.parents)]:
                try:
                    quota = reader(folder)
                except (OSError, ValueError):
                    continue
                if quota is not None:
                    quotas.append(quota)
    return max(1, math.ceil(min(quotas))) if quotas else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(count, limit) if limit else count)


def _default_devices() -> list[str]:
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * available_cpus()


# -- starting and stopping ---------------------------------------------------------------------


class _State:
    """The parent's side of a pool, kept in the pool dict beside sentence-transformers' keys."""

    def __init__(self, inputs: Any, outputs: Any, processes: list[Any], devices: list[str], current: Any) -> None:
        self.inputs, self.outputs, self.processes, self.devices = inputs, outputs, processes, devices
        self.current = current  # shared with the workers: the job id they serve; other chunks are skipped
        self.ids = itertools.count(1)
        self.job_lock = threading.Lock()  # one job at a time, so results cannot mix between callers
        self.route: tuple[int, queue.SimpleQueue | None] = (0, None)  # (job, its inbox), swapped whole
        self.broken: str | None = None
        self.stopping = threading.Event()
        self.stop_lock = threading.Lock()
        self.stopped = False
        self.receiver = threading.Thread(target=self._receive, name="sdk-pool-results", daemon=True)
        self.receiver.start()

    def _receive(self) -> None:
        """Hand each result to the job waiting for it; drop those of jobs that are over."""
        while not self.stopping.is_set():
            try:
                item = self.outputs.get(timeout=POLL_S)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue was closed by stop_pool
                return
            except Exception as exc:  # noqa: BLE001 - an unreadable message: the stream cannot be trusted
                self.fail(f"a result from a pool worker could not be read ({type(exc).__name__}: {exc})")
                return
            job, inbox = self.route
            if inbox is not None and item[0] == job:
                inbox.put(item)

    def fail(self, reason: str) -> None:
        """Mark the pool unusable and wake the caller waiting for results."""
        if self.broken is None:
            self.broken = reason
        inbox = self.route[1]
        if inbox is not None:
            inbox.put(None)

    def check(self) -> None:
        """Raise if the pool was stopped, broke, or lost a worker."""
        if self.stopping.is_set():
            raise SDKError("this pool was stopped; start a new one with start_multi_process_pool()")
        if self.broken is None:
            try:
                dead = [(p, d) for p, d in zip(self.processes, self.devices, strict=True) if not p.is_alive()]
            except ValueError:  # closed by a concurrent stop_pool
                raise SDKError("this pool was stopped; start a new one with start_multi_process_pool()") from None
            if dead:
                process, device = dead[0]
                code = process.exitcode
                how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                more = f" (and {len(dead) - 1} more)" if len(dead) > 1 else ""
                self.broken = f"pool worker {process.pid} on {device} died ({how}){more}"
        if self.broken is not None:
            raise SDKError(
                f"{self.broken}; this pool cannot be used any more: call stop_multi_process_pool(pool) and "
                "start a new one with start_multi_process_pool() (a worker that dies right at start from a "
                "script usually means the script lacks an `if __name__ == '__main__':` guard)"
            )


def start_pool(encoder: torch.nn.Module, target_devices: Sequence[str] | None = None) -> Pool:
    """Start one worker process per entry of ``target_devices`` (default: every GPU, else one
    CPU worker per available CPU)."""
    devices = list(target_devices) if target_devices is not None else _default_devices()
    if not devices or not all(isinstance(d, str) for d in devices):
        raise InputError(f"target_devices must be a non-empty list like ['cuda:0', 'cuda:1'] or ['cpu', 'cpu'], got {target_devices!r}")
    cpu_workers = sum(1 for d in devices if d.startswith("cpu"))
    threads = max(1, available_cpus() // cpu_workers) if cpu_workers else 1
    ctx = torch.multiprocessing.get_context("spawn")
    inputs, outputs = ctx.Queue(), ctx.Queue()
    for channel in (inputs, outputs):
        channel.cancel_join_thread()  # exit must never wait on a pipe that nobody will read
    current = ctx.Value("q", 0, lock=False)
    encoder.to("cpu")
    encoder.share_memory()
    processes: list[Any] = []
    try:
        for device in devices:
            process = ctx.Process(target=_worker, name=f"sdk-pool-{device}", daemon=True,
                                  args=(device, encoder, inputs, outputs, threads, current, os.getpid()))
            process.start()
            processes.append(process)
    except BaseException:
        for process in processes:
            process.kill()
            process.join(STOP_TIMEOUT_S)
        raise
    pool: Pool = {"input": inputs, "output": outputs, "processes": processes,
                  "state": _State(inputs, outputs, processes, devices, current)}
    with _LIVE_LOCK:
        if not _LIVE:
            atexit.unregister(_stop_all)  # registered once (after multiprocessing's own hook, so ours runs first)
            atexit.register(_stop_all)
        _LIVE[id(pool["state"])] = pool
    return pool


def stop_pool(pool: Pool, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop the workers and close the queues; the pool cannot be used afterwards. Safe to call twice."""
    state = _state_of(pool)
    with state.stop_lock:
        if state.stopped:
            return
        state.stopped = True
    state.stopping.set()
    state.current.value = 0
    for process in state.processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in state.processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout)
    state.receiver.join(timeout=POLL_S + 1.0)
    for channel in (state.inputs, state.outputs):
        channel.cancel_join_thread()
        channel.close()
    for process in state.processes:
        if not process.is_alive():
            process.close()
    with _LIVE_LOCK:
        _LIVE.pop(id(state), None)


def _stop_all() -> None:
    """At interpreter exit: stop the pools nobody stopped, so exit neither hangs nor leaks workers."""
    for pool in list(_LIVE.values()):
        stop_pool(pool, timeout=2.0)


def _state_of(pool: Any) -> _State:
    state = pool.get("state") if isinstance(pool, dict) else None
    if not isinstance(state, _State):
        raise InputError("pool must be the dict returned by start_multi_process_pool()")
    return state


# -- the worker ----------------------------------------------------------------------------------


def _worker(device: str, encoder: Any, inputs: Any, outputs: Any, threads: int, current: Any, parent: int) -> None:
    """Serve the current job's chunks until terminated; leave when the parent is gone."""
    from sdk.encoders.backends.graph import GraphModel

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    outputs.cancel_join_thread()
    if device.startswith("cpu"):
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)  # inference runs no inter-op parallel work
        except RuntimeError:  # already started by something in the unpickled encoder
            pass
        for module in encoder.modules():
            if isinstance(module, GraphModel):
                module.threads = module.threads or threads
    encoder.to(device)
    while True:
        try:
            job, chunk_id, method, items, kwargs = inputs.get(timeout=5.0)
        except queue.Empty:
            if os.getppid() != parent:
                os._exit(0)
            continue
        if job != current.value:  # a job that was interrupted or failed: its results would be dropped
            continue
        try:
            # pickled here, not in the queue's feeder thread, so a failure reaches the caller
            payload = pickle.dumps(_pack(getattr(encoder, method)(items, **kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
            outputs.put((job, chunk_id, payload, None))
        except Exception as exc:  # noqa: BLE001 - sent back and re-raised in the caller
            outputs.put((job, chunk_id, None, (type(exc).__name__, str(exc), traceback.format_exc(), os.getpid(), device)))


class _SparseCOO(tuple):
    """A sparse COO tensor as its parts: torch's own sparse pickling rebuilds it without
    invariant checks and warns about that in the parent on every chunk."""


def _pack(result: Any) -> Any:
    if isinstance(result, torch.Tensor) and result.layout == torch.sparse_coo:
        result = result.coalesce()
        return _SparseCOO((result.indices(), result.values(), tuple(result.shape)))
    return result


def _unpack(payload: bytes) -> Any:
    result = pickle.loads(payload)  # noqa: S301 - written by our own worker a moment ago
    if isinstance(result, _SparseCOO):
        indices, values, shape = result
        return torch.sparse_coo_tensor(indices, values, shape, is_coalesced=True, check_invariants=True)
    return result


def _worker_error(error: tuple[str, str, str, int, str]) -> SDKError:
    """The worker's exception in the caller: same SDKError class where possible, worker traceback in the message."""
    name, message, trace, pid, device = error
    text = f"a pool worker failed: {name}: {message}\n\nworker traceback (pid {pid}, {device}):\n{trace}"
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, SDKError):
        try:
            return cls(text)
        except TypeError:  # a class with its own constructor arguments
            pass
    return SDKError(text)


# -- running a job -------------------------------------------------------------------------------


def map_chunks(pool: Pool, method: str, items: Sequence[Any], chunk_size: int | None, kwargs: dict[str, Any]) -> list[Any]:
    """Run ``encoder.<method>(chunk, **kwargs)`` over chunks in the pool; per-chunk results in order."""
    state = _state_of(pool)
    workers = len(state.processes)
    if chunk_size is None:
        chunk_size = max(1, min(-(-len(items) // (workers * 10)), 5000))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunks = [list(items[s : s + chunk_size]) for s in range(0, len(items), chunk_size)]
    with state.job_lock:
        state.check()
        if not chunks:
            return []
        job = next(state.ids)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        state.route = (job, inbox)
        state.current.value = job
        try:
            for i, chunk in enumerate(chunks):
                state.inputs.put((job, i, method, chunk, kwargs))
            return _collect(state, inbox, len(chunks))
        finally:  # finished, failed or interrupted: workers skip what is left, late results are dropped
            state.current.value = 0
            state.route = (0, None)


def _collect(state: _State, inbox: queue.SimpleQueue, count: int) -> list[Any]:
    results: dict[int, Any] = {}
    checked = time.monotonic()
    while len(results) < count:
        try:
            item = inbox.get(timeout=POLL_S)
        except queue.Empty:
            item = None
        if item is None or time.monotonic() - checked > POLL_S:
            state.check()  # a dead worker never sends its chunk back
            checked = time.monotonic()
        if item is None:
            continue
        _, chunk_id, payload, error = item
        if error is not None:
            raise _worker_error(error)
        results[chunk_id] = _unpack(payload)
    return [results[i] for i in range(count)]


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
