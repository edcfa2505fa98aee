"""dvan: Deep Visual-Audio Network for spoken-query retrieval of remote sensing imagery.

The package has no Qt. Data flow: speech -> :mod:`dvan.audio` (MFCC) -> audio branch ->
:mod:`dvan.model.fusion` scorer against a precomputed tile index -> ranked tiles; image ->
image branch -> scorer against a caption index -> ranked captions.
"""

__version__ = "0.1.0"
