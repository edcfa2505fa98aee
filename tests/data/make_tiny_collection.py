"""Generate a tiny spoken collection for the training and evaluation tests.

Three classes of seeded synthetic 64 x 64 textures (stripes, dots, smooth green), five images
each (three train, one val, one test), two captions per image spoken by espeak-ng with seeded
voices and rates, and a ``manifest.jsonl`` in the collection format. Run
``python tests/data/make_tiny_collection.py OUT_DIR`` to look at it; the tests call
:func:`make_tiny_collection` into a temporary folder (about a second).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {
    "stripes": ["parallel stripes cross the whole field", "a field with many straight stripes"],
    "dots": ["many round dots are scattered around", "small round dots everywhere"],
    "meadow": ["a smooth green meadow", "the green meadow is calm and empty"],
}
SPLITS = ["train", "train", "train", "val", "test"]
VOICES = ["en-us", "en-us+f3", "en+m3", "en-gb", "en-us+m5", "en+f2"]


def _texture(label: str, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    if label == "stripes":
        angle = rng.uniform(0, np.pi)
        base = 0.5 + 0.5 * np.sin((x * np.cos(angle) + y * np.sin(angle)) / rng.uniform(2, 4))
        rgb = np.stack([base, base * 0.8, base * 0.6], axis=2)
    elif label == "dots":
        rgb = np.full((64, 64, 3), 0.8, dtype=np.float32)
        for _ in range(25):
            cy, cx, r = rng.uniform(0, 64), rng.uniform(0, 64), rng.uniform(2, 4)
            rgb[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = (0.1, 0.1, 0.3)
    else:
        rgb = np.stack([0.2 + 0.05 * np.sin(x / 20), 0.55 + 0.05 * np.cos(y / 17), 0.2 + 0 * x], axis=2)
    rgb = rgb + rng.normal(0, 0.04, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def make_tiny_collection(out: Path, seed: int = 0, label_names: dict[str, str] | None = None) -> Path:
    """Write images, WAVs and ``manifest.jsonl`` under ``out``; return the manifest path.

    ``label_names`` renames classes in the manifest (a second collection that spells its classes
    its own way, for the multi-collection tests).
    """
    names = label_names or {}
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for label, captions in CLASSES.items():
        for number, split in enumerate(SPLITS):
            image = Path("images") / label / f"{label}{number:02d}.png"
            (out / image).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_texture(label, rng)).save(out / image)
            for k, text in enumerate(captions):
                voice = VOICES[int(rng.integers(0, len(VOICES)))]
                rate = int(rng.integers(150, 200))
                audio = Path("audio") / f"{label}{number:02d}_{k}.wav"
                (out / audio).parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(out / audio), text],
                               check=True, capture_output=True)
                lines.append(json.dumps({"image": str(image), "audio": str(audio), "label": names.get(label, label),
                                         "split": split,
                                         "text": text, "speaker": voice}))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":
    print(make_tiny_collection(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_collection")))
