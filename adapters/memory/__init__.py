"""Exact in-memory reference adapter (numpy): ``memory://``."""

from adapters.memory.adapter import MEMORY_CAPABILITIES, MemoryAdapter

__all__ = ["MEMORY_CAPABILITIES", "MemoryAdapter"]
