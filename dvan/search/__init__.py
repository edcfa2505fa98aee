"""Search: spoken query -> ranked tiles, image -> ranked spoken captions (no Qt).

    from dvan.search import SearchEngine, load_search_model
    engine = SearchEngine(library, load_search_model(checkpoint))
    engine.prepare(progress)
    hits = engine.search(engine.encode_file("query.wav"), top_k=10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvan.search.engine import CaptionHit, Query, SearchEngine, TileHit, load_search_model

# Loaded on first use: importing dvan.search must not import torch.
_EXPORTS = {"CaptionHit": "engine", "Query": "engine", "SearchEngine": "engine", "TileHit": "engine",
            "load_search_model": "engine"}

__all__ = ["CaptionHit", "Query", "SearchEngine", "TileHit", "load_search_model"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
