"""Generate a tiny caption set (images + JSON Lines and UCM-style captions) for the ``dvan speak`` tests.

Run ``python tests/data/make_captions.py OUT_DIR`` to look at it; the tests call :func:`make_captions`
into a temporary folder. Images are seeded 16x16 RGB PNGs (only their existence matters to speaking).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: (image, label, split, captions) of the fixture; one caption is empty on purpose (unspeakable).
CAPTIONS: list[tuple[str, str, str, list[str]]] = [
    ("images/airport/airport00.png", "airport", "train",
     ["Many planes are parked next to a long terminal .", "An airport with two runways ."]),
    ("images/forest/forest00.png", "forest", "val", ["Dense green trees cover the whole area ."]),
    ("images/river/river00.png", "river", "test", ["", "A river flows between green fields ."]),
    ("images/beach/beach00.png", "beach", "test", ["Waves reach a sandy beach ."]),
]


def make_captions(out: Path) -> dict[str, Path]:
    """Write images, ``captions.jsonl`` (6 lines, line 4 empty) and ``ucm/captions.json``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    items = []
    for image, label, split, texts in CAPTIONS:
        path = out / image
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        ucm_path = out / "ucm" / image
        ucm_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(ucm_path)
        for text in texts:
            lines.append(json.dumps({"image": image, "label": label, "split": split, "text": text}))
        items.append({"image": image, "class": label, "split": split, "captions": texts})
    jsonl = out / "captions.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ucm = out / "ucm" / "captions.json"
    ucm.write_text(json.dumps({"dataset": "fixture", "classes": sorted({c[1] for c in CAPTIONS}), "items": items}),
                   encoding="utf-8")
    return {"jsonl": jsonl, "ucm": ucm, "root": out}


if __name__ == "__main__":
    print(make_captions(Path(sys.argv[1] if len(sys.argv) > 1 else "captions_fixture")))
