"""On-disk cache of image and audio features, so a second run starts in seconds.

Layout under the cache root (``$DVAN_CACHE``, else ``~/.cache/dvan``)::

    images/<backbone>/<sha[:2]>/<sha>.npy          V_I (D,) float32 of one image
    audio/<config key>/<sha[:2]>/<sha>.npy          valid frames (C, F, T) float32 of one caption
    audio/<config key>/aug-<aug key>/<sha[:2]>/<sha>-<k>.npy   k-th perturbed copy of it

``sha`` is the SHA-256 of the file's bytes, so renamed or moved files hit the cache and a changed
file misses it. The audio config key hashes every :class:`~dvan.config.AudioConfig` field that
shapes the grid (the layout does not: it only reorders the same numbers) and the feature code
version. Files are plain ``.npy`` read with ``allow_pickle=False``, written to a temporary name and
renamed. Deleting the cache folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dvan.audio.features import AudioFeatures, waveform_features
from dvan.audio.io import read_audio
from dvan.config import AudioConfig, AugmentConfig
from dvan.errors import AudioError
from dvan.fsutil import file_digest
from dvan.model.image_branch import Backbone, read_image
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Bumped when the cached numbers would change for the same inputs and config.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$DVAN_CACHE`` or ``~/.cache/dvan``."""
    env = os.environ.get("DVAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dvan"


def audio_config_key(config: AudioConfig) -> str:
    """Short hash of the AudioConfig fields that shape a feature grid."""
    fields = dataclasses.asdict(config)
    fields.pop("layout")
    fields["cache_version"] = CACHE_VERSION
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def augment_key(augment: AugmentConfig) -> str:
    """Short hash of the settings that shape the waveform copies."""
    fields = {"speed_range": augment.speed_range, "noise_snr_db": list(augment.noise_snr_db),
              "cache_version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def expand(compact: np.ndarray, config: AudioConfig) -> AudioFeatures:
    """The front end's full-size features from cached valid frames (exactly what it computed)."""
    frames = min(compact.shape[2], config.max_frames)
    grid = np.zeros((config.channels, config.n_coefficients, config.max_frames), dtype=np.float32)
    grid[:, :, :frames] = compact[:, :, :frames]
    return AudioFeatures(grid=grid, frames=frames, truncated=False)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial.npy")
    # np.save straight to a file reports a short write without its errno; writing the bytes
    # through Python keeps the OSError (ENOSPC) that says why
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    try:
        with open(partial, "wb") as handle:
            handle.write(buffer.getbuffer())
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def dihedral(image: np.ndarray, view: int) -> np.ndarray:
    """View ``0..7`` of an image: rotations by 90° steps, then the same of its mirror image."""
    turned = np.rot90(image, view % 4)
    return np.array(turned[:, ::-1] if view >= 4 else turned, copy=True)


def perturb_waveform(waveform: np.ndarray, sample_rate: int, augment: AugmentConfig,
                     rng: np.random.Generator) -> np.ndarray:
    """A speed-perturbed (tempo and pitch), noisy copy of a waveform."""
    import librosa

    factor = float(rng.uniform(1.0 - augment.speed_range, 1.0 + augment.speed_range))
    faster = librosa.resample(waveform, orig_sr=sample_rate, target_sr=max(1, round(sample_rate / factor)),
                              res_type="soxr_hq").astype(np.float32)
    power = float(np.mean(faster ** 2)) + 1e-12
    snr = float(rng.uniform(*augment.noise_snr_db))
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), faster.shape).astype(np.float32)
    return faster + noise


class FeatureCache:
    """Image and audio features keyed by file content (see the module docstring)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._digests: dict[tuple[str, int, int], str] = {}

    def digest(self, path: str | Path) -> str:
        """Content digest of a file, memoised per (path, size, mtime)."""
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    # ----------------------------------------------------------------- images

    def image_features(self, paths: Sequence[Path], backbone_name: str, get_backbone: Callable[[], Backbone],
                       views: int = 1, progress: ProgressCallback = no_progress,
                       cancel: CancelToken | None = None, batch_size: int = 16, stage: str = "image features",
                       ) -> np.ndarray:
        """V_I of each image, computed only for those not cached yet.

        Args:
            paths: image files.
            backbone_name: the backbone's name (part of the cache key).
            get_backbone: returns the backbone; called only when something is missing.
            views: 1 for the image as is, or 8 for its dihedral views (rotations and mirrors).
            progress: progress callback.
            cancel: cancellation token, checked between batches.
            batch_size: images per backbone pass.
            stage: stage name of the progress reports.

        Returns:
            (N, D) float32, or (N, views, D) when ``views`` > 1.
        """
        if views not in (1, 8):
            raise ValueError(f"views must be 1 or 8, got {views}")
        folder = self.root / "images" / backbone_name
        keys = [self.digest(p) for p in paths]
        found: dict[tuple[int, int], np.ndarray] = {}
        missing: list[tuple[int, int]] = []
        for i, key in enumerate(keys):
            for view in range(views):
                name = f"{key}.npy" if view == 0 else f"{key}-v{view}.npy"
                cached = _load(folder / key[:2] / name)
                if cached is None:
                    missing.append((i, view))
                else:
                    found[(i, view)] = cached
        total = len(missing)
        if missing:
            backbone = get_backbone()
            progress(Progress(stage, 0, total, f"{total} to compute"))
            for start in range(0, total, batch_size):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                chunk = missing[start:start + batch_size]
                images = [dihedral(read_image(paths[i]), view) for i, view in chunk]
                for (i, view), vector in zip(chunk, backbone.features(images), strict=True):
                    name = f"{keys[i]}.npy" if view == 0 else f"{keys[i]}-v{view}.npy"
                    _save(folder / keys[i][:2] / name, vector.astype(np.float32))
                    found[(i, view)] = vector.astype(np.float32)
                progress(Progress(stage, min(start + batch_size, total), total))
        stacked = np.stack([np.stack([found[(i, v)] for v in range(views)]) for i in range(len(paths))]) \
            if paths else np.zeros((0, views, 0), np.float32)
        return stacked[:, 0] if views == 1 else stacked

    # ------------------------------------------------------------------ audio

    def _audio_path(self, config: AudioConfig, key: str) -> Path:
        return self.root / "audio" / audio_config_key(config) / key[:2] / f"{key}.npy"

    def _copy_path(self, config: AudioConfig, augment: AugmentConfig, key: str, copy: int) -> Path:
        return (self.root / "audio" / audio_config_key(config) / f"aug-{augment_key(augment)}" / key[:2]
                / f"{key}-{copy}.npy")

    def audio_features(self, paths: Sequence[Path], configs: Sequence[AudioConfig],
                       augment: AugmentConfig | None = None, progress: ProgressCallback = no_progress,
                       cancel: CancelToken | None = None, stage: str = "audio features",
                       ) -> tuple[list[list[np.ndarray | None]], list[str]]:
        """Valid-frame feature grids of each file for each config, computed where missing.

        Each file is decoded once for all configs. With ``augment.speed_copies`` > 0 the
        perturbed copies are made too (seeded by the file's content, so they are reproducible).

        Returns:
            ``(features, errors)``: ``features[c][i]`` is file i's (C, F, T) valid-frame grid under
            config c, None when the file cannot be used; ``errors`` names each such file and why.
            The copies stay on disk; :meth:`audio_copies` reads them.
        """
        copies = augment.speed_copies if augment is not None else 0
        results: list[list[np.ndarray | None]] = [[None] * len(paths) for _ in configs]
        errors: list[str] = []
        todo: list[int] = []
        keys: list[str] = []
        for i, path in enumerate(paths):
            key = self.digest(path)
            keys.append(key)
            complete = True
            for c, config in enumerate(configs):
                cached = _load(self._audio_path(config, key))
                if cached is None:
                    complete = False
                else:
                    results[c][i] = cached
                if augment is not None:
                    complete = complete and all(self._copy_path(config, augment, key, k).is_file()
                                                for k in range(copies))
            if not complete:
                todo.append(i)
        total = len(todo)
        if todo:
            progress(Progress(stage, 0, total, f"{total} to compute"))
        for done, i in enumerate(todo, start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            try:
                waveform = read_audio(paths[i], configs[0].sample_rate)
                for c, config in enumerate(configs):
                    target = self._audio_path(config, keys[i])
                    if results[c][i] is None:
                        features = waveform_features(waveform, config, source=str(paths[i]))
                        results[c][i] = features.grid[:, :, :features.frames]
                        _save(target, results[c][i])  # type: ignore[arg-type]
                    if augment is None:
                        continue
                    for k in range(copies):
                        copy_path = self._copy_path(config, augment, keys[i], k)
                        if copy_path.is_file():
                            continue
                        rng = np.random.default_rng([int(keys[i][:12], 16), k, CACHE_VERSION])
                        perturbed = perturb_waveform(waveform, config.sample_rate, augment, rng)
                        features = waveform_features(perturbed, config, source=f"{paths[i]} (copy {k})")
                        _save(copy_path, features.grid[:, :, :features.frames])
            except AudioError as exc:
                errors.append(str(exc))
                for c in range(len(configs)):
                    results[c][i] = None
            if done % 25 == 0 or done == total:
                progress(Progress(stage, done, total))
        return results, errors

    def audio_copies(self, paths: Sequence[Path], config: AudioConfig, augment: AugmentConfig) -> list[list[np.ndarray]]:
        """The cached perturbed copies of each file (call :meth:`audio_features` with ``augment`` first)."""
        out: list[list[np.ndarray]] = []
        for path in paths:
            key = self.digest(path)
            copies = [_load(self._copy_path(config, augment, key, k)) for k in range(augment.speed_copies)]
            out.append([c for c in copies if c is not None])
        return out
