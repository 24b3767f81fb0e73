"""What a speed figure depends on: the CPU, its instruction sets, the runtimes' versions, the threads.

Every benchmark row and every ``backend="auto"`` choice carries this, so figures from different
machines are never compared blind (the same model is 3.5x faster on ONNX int8 on one CPU here and
1.6x on another) and a cached choice is never reused on a CPU it was not measured on.
"""

from __future__ import annotations

import importlib.metadata
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "cpu_flags", "cpu_model", "machine_info", "runtime_versions"]

#: the instruction sets that decide which int8/bf16 kernels run
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "asimd", "sve")


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf8", errors="ignore")
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The FLAGS this CPU has (``avx512vnni`` spellings normalised)."""
    found: set[str] = set()
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")) and ":" in line:
            found.update(f.replace("avx512vnni", "avx512_vnni") for f in line.split(":", 1)[1].split())
            break
    if platform.machine().lower() in ("arm64", "aarch64"):
        found.add("asimd")
    return [f for f in FLAGS if f in found]


def runtime_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for dist in ("torch", "onnxruntime", "openvino", "nncf", "transformers"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """One JSON-able record of the machine a timing was taken on."""
    import torch

    from sdk.encoders.pool import available_cpus

    return {"cpu": cpu_model(), "arch": platform.machine(), "flags": cpu_flags(), "cpus": available_cpus(),
            "threads": threads or torch.get_num_threads(), "versions": runtime_versions()}
