"""Search a library: spoken query -> ranked tiles, image -> ranked spoken captions.

    engine = SearchEngine(Library.open(path), load_search_model())
    engine.prepare(progress)                    # gallery projections for this model, if missing
    hits = engine.search(engine.encode_file("query.wav"), top_k=10, bbox=(w, s, e, n))

Scores are the decomposed fusion of :mod:`dvan.model.fusion`, chunked over the memory-mapped
projections (:mod:`dvan.search.kernels`). :meth:`SearchEngine.search_naive` runs the full
per-pair fusion (:func:`dvan.model.fusion.naive_probability`) on the stored backbone features
instead; on a float32 library both give the same ranking and probabilities (tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvan.audio.features import AudioFeatures, FeatureBackend, file_features, recording_features
from dvan.errors import (
    CheckpointError,
    EmptyQueryError,
    InvalidValueError,
    LibraryDamagedError,
    LibraryError,
    UntrainedModelError,
)
from dvan.library.captions import ensure_captions
from dvan.library.projection import (
    captions_key,
    ensure_gallery,
    gallery_is_current,
    gallery_key,
    project_features,
)
from dvan.library.raster import open_raster
from dvan.library.store import Caption, Library, Tile
from dvan.model.factory import ModelBundle, create_model
from dvan.model.fusion import naive_probability
from dvan.model.metadata import is_trained
from dvan.progress import CancelToken, ProgressCallback, no_progress
from dvan.resources import default_model_path
from dvan.search.kernels import DEFAULT_CHUNK_ROWS, Decision, TopK, default_backend, top_k

BBox = tuple[float, float, float, float]

#: Spoken queries are analysed without librosa (the same features as training's, to float32 rounding).
QUERY_FEATURES: FeatureBackend = "numpy"


def load_search_model(checkpoint: str | Path | None = None, device: str | torch.device = "auto",
                      allow_untrained: bool = False) -> ModelBundle:
    """The model that ranks results: ``checkpoint``, or the embedded default model.

    Args:
        checkpoint: a checkpoint file; None takes resources/models/default.safetensors.
        device: "auto", "cpu", "cuda", ...
        allow_untrained: accept a model whose info lacks ``"trained": true`` (its rankings
            are meaningless; for tests and debugging only).

    Raises:
        CheckpointError: no checkpoint given and no default model installed, or unreadable.
        UntrainedModelError: the model is not marked trained and ``allow_untrained`` is False.
    """
    path = Path(checkpoint) if checkpoint is not None else default_model_path()
    if checkpoint is None and not path.is_file():
        raise CheckpointError(f"no trained model: the default model {path} is not installed; train one with "
                              "'dvan train' (it is written there) or pass --model CKPT")
    bundle = create_model(checkpoint=path, device=device)
    if not is_trained(bundle.info) and not allow_untrained:
        raise UntrainedModelError(f"{path}: this model is not marked as trained (its info lacks \"trained\": true), "
                                  "so its rankings are meaningless and are not shown; use a trained model, or pass "
                                  "--allow-untrained to see them anyway")
    return bundle


@dataclass(frozen=True)
class Query:
    """An encoded spoken query.

    Attributes:
        audio_feature: V_S (d3,) of the audio branch (used by the naive path).
        projection: q = W_S V_S (d4,) float32.
        source: file name or "recording".
        seconds: seconds of speech analysed (after trimming, up to the model's limit).
        truncated: whether longer speech was cut at the model's limit.
        mode: "audio" (q = W_S V_S), "text" (q = W_T E(text) + b_T) or "hybrid" (both mixed).
        text: the typed words or the transcript the text branch read, if any.
    """

    audio_feature: torch.Tensor
    projection: np.ndarray
    source: str
    seconds: float
    truncated: bool
    mode: str = "audio"
    text: str | None = None


@dataclass(frozen=True)
class TileHit:
    """One ranked tile."""

    rank: int
    probability: float
    logit: float
    tile: Tile

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rank": self.rank, "probability": self.probability, "logit": self.logit, **self.tile.to_dict()}


@dataclass(frozen=True)
class CaptionHit:
    """One ranked spoken caption."""

    rank: int
    probability: float
    logit: float
    caption: Caption

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rank": self.rank, "probability": self.probability, "logit": self.logit, **self.caption.to_dict()}


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))


class SearchEngine:
    """Ranks a library's tiles for spoken queries and its spoken captions for images.

    Args:
        library: an open library.
        bundle: the model (see :func:`load_search_model`).
        backend: "auto" (fused CPU kernel, or torch on CUDA or for a small gallery in a fresh process:
            see :func:`dvan.search.kernels.default_backend`), "numba" or "torch".
        chunk_rows: rows scored per chunk (memory is bounded by one chunk).

    Raises:
        BackboneMismatchError: the model's backbone is not the library's.
    """

    def __init__(self, library: Library, bundle: ModelBundle, backend: str = "auto",
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        library.check_backbone(bundle.config.backbone, f"model {bundle.checkpoint.name}" if bundle.checkpoint
                               else "the model")
        self.library = library
        self.bundle = bundle
        # "auto" is resolved per search: it depends on how many rows are scored
        self.backend = backend
        self.chunk_rows = chunk_rows
        bundle.model.eval()
        self.decision = Decision.from_scorer(bundle.model.fusion)
        # the model's weights are fixed for the engine's life: digest them once, not per query
        self._gallery_key = gallery_key(bundle.model)
        self._captions_key = captions_key(bundle.model)

    @property
    def trained(self) -> bool:
        """Whether the model is marked trained (else its results must not be shown as such)."""
        return is_trained(self.bundle.info)

    # -- preparing ---------------------------------------------------------------------------------

    @property
    def needs_projection(self) -> bool:
        """Whether :meth:`prepare` has work to do (new model, or tiles imported without one)."""
        captions_stale = bool(self.library.captions()) and self.library.meta("captions_key") != self._captions_key
        return not gallery_is_current(self.library, self.bundle.model, self._gallery_key) or captions_stale

    def prepare(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> bool:
        """Compute the gallery (and caption) projections this model needs; returns whether it did."""
        did = ensure_gallery(self.library, self.bundle, progress, cancel)
        if self.library.captions() and self.library.meta("captions_key") != self._captions_key:
            did = ensure_captions(self.library, self.bundle, progress, cancel) or did
        return did

    # -- queries -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, features: AudioFeatures, source: str) -> Query:
        """Encode front-end features into a query."""
        inputs = self.bundle.audio_frontend.batch([features]).to(self.bundle.device)
        audio_feature = self.bundle.model.encode_audio(inputs)
        projection = self.bundle.model.fusion.query_projection(audio_feature)
        config = self.bundle.config.audio
        return Query(audio_feature=audio_feature[0].float().cpu(),
                     projection=projection[0].float().cpu().numpy().astype(np.float32), source=source,
                     seconds=features.frames * config.hop_length / config.sample_rate, truncated=features.truncated)

    def encode_file(self, path: str | Path) -> Query:
        """Encode a spoken query from an audio file (WAV, FLAC, OGG).

        Raises:
            AudioError: the file is not usable audio.
        """
        return self.encode(file_features(path, self.bundle.config.audio, QUERY_FEATURES), str(path))

    def encode_recording(self, samples: np.ndarray, sample_rate: int) -> Query:
        """Encode a spoken query from recorded samples (framed by :func:`dvan.audio.features.recording_features`)."""
        return self.encode(recording_features(samples, sample_rate, self.bundle.config.audio, QUERY_FEATURES),
                           "recording")

    @property
    def has_text_branch(self) -> bool:
        """Whether the model can search by text (typed, or a transcript) and in hybrid mode."""
        return self.bundle.text_branch is not None

    @property
    def default_mode(self) -> str:
        """The mode that won on validation for this model ("audio" for a model without a text branch)."""
        branch = self.bundle.text_branch
        return branch.config.default_mode if branch is not None else "audio"

    def _text_projection(self, text: str, mode: str) -> tuple[str, np.ndarray]:
        from dvan.query.text import get_sentence_encoder, require_text_branch

        branch = require_text_branch(self.bundle.text_branch, self.bundle.checkpoint, mode)
        words = " ".join(text.split())
        if not words:
            raise EmptyQueryError("the text query is empty: type what you are looking for "
                                  "(e.g. \"airplanes parked at a terminal\")")
        embedding = get_sentence_encoder(str(self.bundle.device)).encode([words])
        return words, branch.project(embedding)[0]

    def encode_text(self, text: str) -> Query:
        """Encode a typed query (or a transcript) through the text branch.

        Raises:
            TextBranchMissingError: the model has no text branch.
            EmptyQueryError: ``text`` holds no words.
            ModelPackageMissingError: the sentence encoder is not installed.
        """
        words, projection = self._text_projection(text, "text")
        return Query(audio_feature=torch.zeros(0), projection=projection, source=f'text "{words}"', seconds=0.0,
                     truncated=False, mode="text", text=words)

    def for_mode(self, mode: str, spoken: Query | None, text: str | None) -> Query:
        """The query of ``mode`` from a spoken query and/or its words (typed, or its transcript).

        Raises:
            ValueError: the mode needs what was not given.
            TextBranchMissingError: a text or hybrid mode on a model without a text branch.
        """
        from dvan.query.text import combine

        if mode == "audio":
            if spoken is None:
                raise ValueError("audio mode needs a spoken query")
            return spoken
        if mode == "text" or spoken is None:
            query = self.encode_text(text or "")
            return replace(query, source=spoken.source, seconds=spoken.seconds) if spoken is not None else query
        words, text_projection = self._text_projection(text or "", mode)
        weight = self.bundle.text_branch.config.hybrid_weight
        return replace(spoken, projection=combine("hybrid", spoken.projection, text_projection, weight),
                       mode="hybrid", text=words)

    # -- tiles -------------------------------------------------------------------------------------

    def candidates(self, bbox: BBox | None = None, sources: Sequence[str | Path] | None = None) -> np.ndarray:
        """Sorted rows of the tiles passing the filters.

        Args:
            bbox: (west, south, east, north) in WGS84 degrees; tiles whose footprint intersects
                it pass (tiles without georeferencing never do).
            sources: files (or folders) whose tiles pass.
        """
        rows = self.library.live_rows()
        if bbox is not None:
            check_bbox(bbox)
            rows = np.intersect1d(rows, self.library.rows_in_bbox(*bbox), assume_unique=True)
        if sources:
            rows = np.intersect1d(rows, self.library.rows_of_sources(sources), assume_unique=True)
        return rows

    def search(self, query: Query | str | Path, top_k: int = 10, bbox: BBox | None = None,
               sources: Sequence[str | Path] | None = None, cancel: CancelToken | None = None) -> list[TileHit]:
        """The ``top_k`` tiles most likely to match the query, best first.

        Raises:
            LibraryError: the library's projections are not for this model; call :meth:`prepare`.
        """
        check_top(top_k)
        if not isinstance(query, Query):
            query = self.encode_file(query)
        self._require_finite(query.projection)
        if not gallery_is_current(self.library, self.bundle.model, self._gallery_key):
            raise LibraryError(f"{self.library.path}: gallery projections are not for this model yet; run "
                               f"'dvan library reproject {self.library.path} --model CKPT' (SearchEngine.prepare)")
        gallery = self.library.gallery()
        try:
            rows, logits = _top_k(gallery, self.candidates(bbox, sources), query.projection, self.decision, top_k,
                                  self.backend, self.bundle.device, self.chunk_rows, cancel)
        except FloatingPointError as exc:
            raise LibraryDamagedError(
                f"{self.library.path}: {exc} (NaN in the stored gallery projections); no ranking is shown; run "
                f"'dvan library check {self.library.path} --repair'") from exc
        tiles = self.library.tiles_at_rows(rows.tolist())
        return [TileHit(rank + 1, _sigmoid(float(logit)), float(logit), tile)
                for rank, (logit, tile) in enumerate(zip(logits, tiles, strict=True))]

    @torch.inference_mode()
    def search_naive(self, query: Query | str | Path, top_k: int = 10, bbox: BBox | None = None,
                     sources: Sequence[str | Path] | None = None, chunk_rows: int = 4096) -> list[TileHit]:
        """As :meth:`search`, with the full fusion run for every (tile, query) pair (reference path).

        Ranks by the match probability of equation 5 and reports its logit
        ``log(p / (1 - p))``; slow, for tests and benchmarks.
        """
        check_top(top_k)
        if not isinstance(query, Query):
            query = self.encode_file(query)
        if query.mode != "audio":
            raise ValueError("the naive reference path scores audio queries only")
        features = self.library.backbone_features()
        candidates = self.candidates(bbox, sources)
        audio = query.audio_feature.to(self.bundle.device)
        best = TopK(top_k)
        for start in range(0, candidates.size, chunk_rows):
            rows = candidates[start:start + chunk_rows]
            images = torch.from_numpy(np.asarray(features[rows], dtype=np.float32)).to(self.bundle.device)
            probability = naive_probability(self.bundle.model.fusion, images, audio).double().cpu().numpy()
            logits = np.log(probability) - np.log1p(-probability)
            best.add(rows, logits.astype(np.float32))
        if best.nonfinite:
            raise LibraryDamagedError(f"{self.library.path}: {best.nonfinite} NaN score(s) from the stored features; no "
                                      f"ranking is shown; run 'dvan library check {self.library.path} --repair'")
        rows, logits = best.result()
        tiles = self.library.tiles_at_rows(rows.tolist())
        return [TileHit(rank + 1, _sigmoid(float(logit)), float(logit), tile)
                for rank, (logit, tile) in enumerate(zip(logits, tiles, strict=True))]

    # -- captions ----------------------------------------------------------------------------------

    def image_projection(self, image: np.ndarray | str | Path | int) -> np.ndarray:
        """Gallery projection G (d4,) of an image: (H, W, 3) uint8 pixels, an image file, or a tile id.

        A file larger than the library's tile size is read whole, downsampled to the tile size.
        A tile id uses the tile's stored backbone feature (no raster read).
        """
        if isinstance(image, (int, np.integer)):
            features = self.library.tile_features([int(image)])
        else:
            if isinstance(image, (str, Path)):
                with open_raster(image) as source:
                    pixels = source.read_whole(int(self.library.meta("tile_size")))[0]
            else:
                pixels = np.asarray(image)
            features = self.bundle.backbone.features([pixels])
        return project_features(self.bundle.model, features.astype(np.float16), self.bundle.device)[0]

    def captions(self, image: np.ndarray | str | Path | int, top_k: int = 10) -> list[CaptionHit]:
        """The ``top_k`` spoken captions most likely to describe the image, best first.

        Raises:
            LibraryError: the library holds no spoken captions, or they are for another model.
        """
        check_top(top_k)
        held = self.library.captions()
        if not held:
            raise LibraryError(f"{self.library.path}: the library holds no spoken captions; add some with "
                               f"'dvan library add-captions {self.library.path} MANIFEST'")
        if self.library.meta("captions_key") != self._captions_key:
            raise LibraryError(f"{self.library.path}: the spoken captions were encoded by another model; run "
                               f"'dvan library reproject {self.library.path} --model CKPT' (SearchEngine.prepare)")
        projection = self.image_projection(image)
        self._require_finite(projection)
        gallery = self.library.caption_projections()
        candidates = np.array(sorted(c.row for c in held), dtype=np.int64)
        try:
            rows, logits = _top_k(gallery, candidates, projection, self.decision, top_k, self.backend,
                                  self.bundle.device, self.chunk_rows, None)
        except FloatingPointError as exc:
            raise LibraryDamagedError(
                f"{self.library.path}: {exc} (NaN in the stored caption projections); no ranking is shown; run "
                f"'dvan library check {self.library.path} --repair'") from exc
        captions = self.library.captions_at_rows(rows.tolist())
        return [CaptionHit(rank + 1, _sigmoid(float(logit)), float(logit), caption)
                for rank, (logit, caption) in enumerate(zip(logits, captions, strict=True))]


    def _require_finite(self, projection: np.ndarray) -> None:
        """Refuse a model whose query side or decision vector is not finite (NaN weights)."""
        if np.isfinite(projection).all() and np.isfinite(self.decision.direction).all() and \
                math.isfinite(self.decision.offset):
            return
        name = str(self.bundle.checkpoint) if self.bundle.checkpoint else "the model"
        raise CheckpointError(f"{name}: the model computes NaN/Inf scores (its weights hold NaN or Inf), so no "
                              "ranking is shown; use another checkpoint (retrain, or restore this one)")


def check_top(top_k: int) -> None:
    """Refuse a result count below 1.

    Raises:
        InvalidValueError: naming the option.
    """
    if top_k < 1:
        raise InvalidValueError(f"--top {top_k}: ask for at least 1 result")


def check_bbox(bbox: Sequence[float]) -> None:
    """Refuse a lon/lat box that is not on the globe: W, E in [-180, 180], S <= N in [-90, 90], all finite.

    Raises:
        InvalidValueError: naming the values.
    """
    shown = " ".join(f"{v:g}" for v in bbox)
    if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
        raise InvalidValueError(f"--bbox {shown}: give four finite numbers W S E N in degrees")
    west, south, east, north = bbox
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidValueError(f"--bbox {shown}: W and E must lie in [-180, 180], S and N in [-90, 90] with S <= N "
                                "(W > E crosses the antimeridian)")


def _top_k(gallery: np.ndarray, candidates: np.ndarray, query: np.ndarray, decision: Decision, k: int, backend: str,
           device: torch.device, chunk_rows: int, cancel: CancelToken | None) -> tuple[np.ndarray, np.ndarray]:
    check = cancel.raise_if_cancelled if cancel is not None else None
    if backend == "auto":
        backend = default_backend(device, int(candidates.size))
    return top_k(gallery, candidates, query, decision, k, backend=backend, device=device, chunk_rows=chunk_rows,
                 check=check)
