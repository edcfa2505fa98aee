"""Build the small, real world the app tests drive: a trained model, a library with captions, spoken queries.

* the tiny spoken collection of ``make_tiny_collection.py`` (3 classes x 5 textures, 2 captions each);
* a DVAN model trained on it for a few epochs with ``dvan.train`` (dvan-plus without augmentation; its info
  says ``"trained": true``);
* a library (real efficientnet-lite0 features, 128 px tiles) holding the rasters of ``make_rasters.py``
  (georeferenced GeoTIFFs in UTM and WGS84, plain PNG/JPEG chips, broken files) and the collection's
  images, with the collection's spoken captions for image -> audio search;
* spoken queries (espeak-ng, 16 kHz mono 16-bit, with quiet padding) in ``queries/``.

Run ``python tests/data/make_app_world.py OUT_DIR`` to look at it; the app tests call
:func:`make_app_world` once per session (about 10 s on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))

QUERIES = {
    "stripes": "parallel stripes cross the whole field",
    "dots": "many round dots are scattered around",
    "meadow": "a smooth green meadow",
}


def speak(text: str, path: Path, voice: str = "en-us", rate: int = 16000, pad_s: float = 0.3) -> Path:
    """Speak ``text`` with espeak-ng into a ``rate`` Hz mono 16-bit WAV with ``pad_s`` of digital silence on both ends."""
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
        data, source_rate = sf.read(raw, dtype="float32")
    if data.ndim == 2:
        data = data.mean(axis=1)
    data = soxr.resample(data, source_rate, rate).astype(np.float32)
    data = 0.8 * data / max(1e-6, float(np.abs(data).max()))
    # no exact zeros at the speech's ends: the padding alone is digital silence (a whole number of 5 ms frames)
    pcm = np.round(data * 32767).astype(np.int16)
    nonzero = np.flatnonzero(pcm)
    data = pcm[nonzero[0]: nonzero[-1] + 1].astype(np.float32) / 32767
    pad = np.zeros(int(pad_s * rate), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate([pad, data, pad]), rate, subtype="PCM_16")
    return path


def make_app_world(out: Path, epochs: int = 4) -> dict[str, Path]:
    """Build everything under ``out`` and return the paths by name.

    Keys: ``manifest``, ``model``, ``library``, ``rasters``, ``run``, ``cache`` and one
    ``query_<class>`` WAV per class of the collection.
    """
    from make_rasters import make_rasters
    from make_tiny_collection import make_tiny_collection

    from dvan.library.captions import add_captions
    from dvan.library.importer import import_paths
    from dvan.library.store import Library
    from dvan.model.factory import create_model
    from dvan.train import make_train_config, train
    from dvan.train.config import AugmentConfig

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"manifest": make_tiny_collection(out / "collection")}
    make_rasters(out / "rasters-src")
    paths["rasters"] = out / "rasters-src" / "rasters"
    # no augmentation: its speed-perturbed copies of every caption would triple the time spent on features
    config = make_train_config("dvan-plus", batch_size=6, warmup_steps=2, epochs=epochs, log_every=1, patience=epochs,
                               augment=AugmentConfig())
    paths["cache"] = out / "cache"
    result = train(paths["manifest"], config, out / "run", device="cpu", cache_dir=paths["cache"])
    paths["run"] = out / "run"
    paths["model"] = Path(result.checkpoint)
    bundle = create_model(checkpoint=paths["model"], device="cpu")
    library = Library.create(out / "library", backbone=bundle.config.backbone, tile_size=128)
    try:
        import_paths(library, [paths["rasters"], paths["manifest"].parent / "images"], bundle=bundle)
        add_captions(library, paths["manifest"], bundle)
    finally:
        library.close()
    paths["library"] = out / "library"
    for label, text in QUERIES.items():
        paths[f"query_{label}"] = speak(text, out / "queries" / f"{label}.wav")
    return paths


if __name__ == "__main__":
    for name, path in make_app_world(Path(sys.argv[1] if len(sys.argv) > 1 else "app-world")).items():
        print(name, path)
