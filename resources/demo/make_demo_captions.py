"""Make the demo's spoken captions: a small collection for the Captions tab and for fine-tuning.

Run from the repository root (needs ../shared/benchmark/ucm, espeak-ng and flite)::

    .venv/bin/python resources/demo/make_demo_captions.py

For each of the 42 demo images (the 36 mosaic tiles, cut out as JPEGs, and the 6 chips) two of its
UCM-captions are spoken by offline TTS voices (``dvan speak``, seed 0) and stored as Ogg Vorbis. The
manifest ``captions/manifest.jsonl`` splits the images 30 / 6 / 6 into train / val / test, so
the same files serve as a demo collection for the Training tab and ``dvan train --init``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import rasterio
import soundfile as sf
from PIL import Image
from rasterio.windows import Window

DEMO = Path(__file__).resolve().parent
UCM = DEMO.parent.parent.parent / "shared" / "benchmark" / "ucm"
VOICES = ["espeak:en-us+m3", "espeak:en-gb+f2", "flite:slt", "espeak:en-us+f1", "flite:awb", "espeak:en-gb+m2"]


def main() -> int:
    from dvan.cli.main import main as dvan

    layout = json.loads((DEMO / "layout.json").read_text())
    captions = {item["image"]: item["captions"] for item in json.loads((UCM / "captions.json").read_text())["items"]}
    out = DEMO / "captions"
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    with rasterio.open(DEMO / "demo_scene.tif") as scene:
        for tile in layout["tiles"]:
            x, y, w, h = tile["window"]
            pixels = scene.read([1, 2, 3], window=Window(x, y, w, h)).transpose(1, 2, 0)
            name = Path(tile["ucm_image"]).name
            Image.fromarray(pixels).save(images / name, quality=90)
            rows.append((f"images/{name}", tile["class"], tile["ucm_image"]))
    for chip in sorted((DEMO / "chips").glob("*.jpg")):
        label = chip.stem.rstrip("0123456789")
        rows.append((f"../chips/{chip.name}", label, f"{label}/{chip.name}"))
    splits = ["train"] * 30 + ["val"] * 6 + ["test"] * 6
    order = sorted(range(len(rows)), key=lambda i: (i * 7919) % len(rows))  # fixed shuffle, no RNG state needed
    with tempfile.TemporaryDirectory() as work:
        text_file = Path(work) / "captions.jsonl"
        with open(text_file, "w") as handle:
            for rank, index in enumerate(order):
                image, label, ucm_image = rows[index]
                for text in captions[f"images/{ucm_image}"][:2]:
                    record = {"image": str((out / image).resolve()), "label": label, "split": splits[rank], "text": text}
                    handle.write(json.dumps(record) + "\n")
        code = dvan(["speak", str(text_file), work + "/spoken", "--voices", *VOICES, "--seed", "0", "--quiet"])
        if code:
            return code
        manifest = [json.loads(line) for line in open(Path(work) / "spoken" / "manifest.jsonl")]
        audio_dir = out / "audio"
        audio_dir.mkdir(exist_ok=True)
        with open(out / "manifest.jsonl", "w") as handle:
            for number, record in enumerate(manifest):
                wav = (Path(work) / "spoken" / record["audio"]).resolve()
                data, rate = sf.read(wav)
                flac = audio_dir / f"caption{number:03d}.ogg"
                sf.write(flac, data, rate, format="OGG", subtype="VORBIS")
                record["audio"] = f"audio/{flac.name}"
                record["image"] = str(Path((Path(work) / "spoken" / record["image"]).resolve()).relative_to(out.resolve())) \
                    if (Path(work) / "spoken" / record["image"]).resolve().is_relative_to(out.resolve()) \
                    else "../chips/" + Path(record["image"]).name
                handle.write(json.dumps(record) + "\n")
    print(f"{len(manifest)} spoken captions in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
