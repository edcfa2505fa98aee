"""Build the embedded demo: a 6 x 6 mosaic GeoTIFF of UC Merced test images, loose JPEG chips, spoken queries.

    .venv/bin/python resources/demo/make_demo.py [--ucm ../shared/benchmark/ucm]

Writes, next to this script:

* ``demo_scene.tif``: 36 UC Merced images of the test split (12 classes x 3), 256 x 256 each,
  side by side in a 1536 x 1536 RGB GeoTIFF (JPEG-compressed, tiled) with ILLUSTRATIVE coordinates:
  EPSG:32611 (UTM 11N), upper-left corner (383000 E, 3762000 N), 0.3048 m pixels (one foot, the
  dataset's resolution). The images come from many US cities; the place is made up.
* ``chips/*.jpg``: 6 more test images of other classes, copied as they are (no georeferencing).
* ``queries/*.wav``: short spoken queries, espeak-ng (en-us) resampled to 16 kHz mono 16-bit.
* ``layout.json``: which image lies where (the demo's ground truth).

Everything is chosen by a fixed seed, so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MOSAIC_CLASSES = ("airplane", "baseballdiamond", "beach", "buildings", "denseresidential", "freeway", "golfcourse",
                  "harbor", "parkinglot", "river", "storagetanks", "tenniscourt")
CHIP_CLASSES = ("agricultural", "forest", "intersection", "overpass", "runway", "mobilehomepark")
QUERIES = {
    "airplanes": "several airplanes parked at the airport",
    "baseball": "a baseball field surrounded by green trees",
    "harbor": "many white boats docked in a harbor",
    "freeway": "a freeway with cars driving on both sides",
    "houses": "a dense residential area with many houses close together",
}
ORIGIN = (383000.0, 3762000.0)
PIXEL = 0.3048
GRID = 6
SIZE = 256


def _test_images(ucm: Path, name: str, count: int, rng: random.Random) -> list[Path]:
    from PIL import Image

    items = json.loads((ucm / "captions.json").read_text())["items"]
    candidates = [ucm / i["image"] for i in items if i["class"] == name and i["split"] == "test"]
    candidates = [p for p in sorted(candidates) if Image.open(p).size == (SIZE, SIZE)]
    return rng.sample(candidates, count)


def _speak(text: str, target: Path) -> None:
    import librosa
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), text], check=True)
        samples, rate = sf.read(raw, dtype="float32")
    samples = librosa.resample(samples, orig_sr=rate, target_sr=16000, res_type="soxr_hq")
    sf.write(target, samples, 16000, subtype="PCM_16")


def build(ucm: Path) -> None:
    import rasterio
    from affine import Affine
    from PIL import Image

    rng = random.Random(2016)
    picks = [(name, path) for name in MOSAIC_CLASSES for path in _test_images(ucm, name, 3, rng)]
    rng.shuffle(picks)
    mosaic = np.zeros((3, GRID * SIZE, GRID * SIZE), dtype=np.uint8)
    layout = {"crs": "EPSG:32611", "origin": ORIGIN, "pixel_size_m": PIXEL, "coordinates": "illustrative",
              "tiles": [], "chips": []}
    for index, (name, path) in enumerate(picks):
        row, col = divmod(index, GRID)
        mosaic[:, row * SIZE:(row + 1) * SIZE, col * SIZE:(col + 1) * SIZE] = \
            np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        layout["tiles"].append({"window": [col * SIZE, row * SIZE, SIZE, SIZE], "class": name,
                                "ucm_image": f"{path.parent.name}/{path.name}"})
    profile = {"driver": "GTiff", "width": GRID * SIZE, "height": GRID * SIZE, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32611", "transform": Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]), "compress": "JPEG",
               "jpeg_quality": 88, "photometric": "YCBCR", "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(HERE / "demo_scene.tif", "w", **profile) as dst:
        dst.write(mosaic)
        dst.update_tags(SOURCE="UC Merced Land Use test images (USGS National Map, public domain); "
                               "coordinates are illustrative, not the images' real location")
    chips = HERE / "chips"
    shutil.rmtree(chips, ignore_errors=True)
    chips.mkdir()
    for name in CHIP_CLASSES:
        path = _test_images(ucm, name, 1, rng)[0]
        shutil.copy(path, chips / path.name)
        layout["chips"].append({"file": f"chips/{path.name}", "class": name})
    queries = HERE / "queries"
    shutil.rmtree(queries, ignore_errors=True)
    queries.mkdir()
    for name, text in QUERIES.items():
        _speak(text, queries / f"{name}.wav")
    layout["queries"] = {f"queries/{name}.wav": text for name, text in QUERIES.items()}
    (HERE / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"demo written to {HERE} ({total / 1e6:.2f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ucm", type=Path, default=HERE.parents[2] / "shared" / "benchmark" / "ucm",
                        help="the UC Merced folder holding captions.json and images/")
    args = parser.parse_args()
    if not (args.ucm / "captions.json").is_file():
        print(f"UC Merced not found at {args.ucm}; pass --ucm", file=sys.stderr)
        return 2
    build(args.ucm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
