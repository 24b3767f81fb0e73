"""Progress bars for long jobs (indexing, evaluation, sync): on a terminal, silent in CI logs."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


class _NoBar:
    def update(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(total: int, desc: str, enabled: bool | None, unit: str = "doc") -> Any:
    """A tqdm bar on stderr, off when stderr is not a terminal (CI logs) unless asked for."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
