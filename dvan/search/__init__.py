"""Search: spoken query -> ranked tiles, image -> ranked spoken captions (no Qt).

    from dvan.search import SearchEngine, load_search_model
    engine = SearchEngine(library, load_search_model(checkpoint))
    engine.prepare(progress)
    hits = engine.search(engine.encode_file("query.wav"), top_k=10)
"""

from dvan.search.engine import (
    CaptionHit,
    Query,
    SearchEngine,
    TileHit,
    is_trained,
    load_search_model,
)
from dvan.search.record import record_query

__all__ = ["CaptionHit", "Query", "SearchEngine", "TileHit", "is_trained", "load_search_model", "record_query"]
