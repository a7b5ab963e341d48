"""Where downloaded packs, converted models and derived data live between runs."""

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TRANSPLANT_CACHE/<parts>` (default ~/.cache/transplant), created on demand."""
    root = Path(os.environ.get("TRANSPLANT_CACHE", Path.home() / ".cache" / "transplant"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
