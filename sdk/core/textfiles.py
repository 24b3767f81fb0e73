"""Reading texts from a file: a ``.jsonl`` of objects with a ``text`` field (BEIR's corpus.jsonl), else one per line.

Calibration sets (OpenVINO static int8) and unlabelled training corpora (TSDAE) both take such a
file; one reader keeps the rules (a title is joined before the text, blank lines skipped, a bad
line named with its number) the same for both.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdk.core.errors import InputError

__all__ = ["read_texts"]


def read_texts(path: Path, *, title_separator: str = " ") -> list[str]:
    """Non-empty texts of ``path``: each object's ``title`` + ``title_separator`` + ``text`` for .jsonl, else each line."""
    with open(path, encoding="utf8") as fh:
        if path.suffix != ".jsonl":
            return [line.rstrip("\n") for line in fh if line.strip()]
        texts = []
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number} is not JSON ({exc.msg}); a .jsonl file holds one object with a "
                                 "'text' field per line") from exc
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str):
                continue
            title = row.get("title")
            title = title.strip() if isinstance(title, str) else ""
            texts.append(f"{title}{title_separator}{text}" if title else text)
        return texts
