"""Files written whole or not at all.

Everything training writes that a later step reads back (labels, state.json, a model whose
metadata is rewritten, a dataset's images) goes through :func:`write_whole`: the bytes go to
``NAME.part`` beside the target, which is then renamed over it. A rename within one folder is
atomic, so a killed writer (Ctrl-C, a session's end) leaves the old file or the new one, never
half of either, and a resumed label run or training run can trust what it finds.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded) to ``path``, creating its folder, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(part, path)
