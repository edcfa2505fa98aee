"""Generate the seeded raster fixtures of the library and search tests, including broken files.

Run ``python tests/data/make_rasters.py OUT_DIR`` to look at them; the tests call
:func:`make_rasters` into a temporary folder. Everything is tiny (tiles of 128 px in the tests)
so the real efficientnet-lite0 backbone gets through them in seconds.

``OUT/rasters/`` (the import folder):

=====================  =========================================================================
utm_rgb.tif            3-band uint8, EPSG:32611 (UTM 11N), 0.5 m pixels, 300 x 200 -> 6 tiles
wgs84_gray.tif         1-band uint8, EPSG:4326, 1e-5 degree pixels, 200 x 150 -> 4 tiles
rgba.tif               4-band uint8 with alpha, EPSG:32611, 128 x 128, left half transparent
uint16.tif             3-band uint16 (12-bit data + hot pixels), EPSG:32611, 128 x 128
nodata.tif             1-band uint16, nodata 0, EPSG:32611, 256 x 128; right tile all nodata
scene.jp2              JPEG2000, 3-band uint8, EPSG:3857 (Web Mercator) near 20 E 50 N, 100 x 80 -> 1 tile
sub/chip.png           64 x 64 RGB PNG without georeferencing -> 1 tile, no footprint
sub/chip.jpg           48 x 40 RGB JPEG without georeferencing -> 1 tile
corrupt.tif            random bytes named .tif -> reported as corrupt
truncated.tif          a GeoTIFF cut in the middle of its pixel data -> reported
notes.txt, README      not rasters -> skipped quietly
=====================  =========================================================================

``OUT/many/``: one 384 x 256 GeoTIFF (6 tiles of 128 px) and 6 small chips, for the killed import.
``OUT/query.wav``, ``OUT/query2.wav``: seeded speech-like queries; ``OUT/captions/``: a manifest of
4 spoken captions of the two chips.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
import soundfile as sf
from affine import Affine
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_audio import speechlike  # noqa: E402

UTM = "EPSG:32611"
WGS84 = "EPSG:4326"
#: Upper-left corner of the UTM fixtures (near Los Angeles).
UTM_ORIGIN = (380000.0, 3770000.0)
#: Upper-left corner of the WGS84 fixture (lon, lat).
WGS84_ORIGIN = (-118.25, 34.05)


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up geotransform (rasterio's from_origin, without its deprecation warning)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def _texture(rng: np.random.Generator, height: int, width: int, bands: int) -> np.ndarray:
    """Smooth random texture with some structure (blocks and stripes) in 0..1."""
    y, x = np.mgrid[0:height, 0:width] / 16.0
    planes = []
    for band in range(bands):
        phase = rng.uniform(0, 6.28, 3)
        plane = (np.sin(x + phase[0]) * np.cos(y * 0.7 + phase[1]) + 0.5 * np.sin((x + y) * 0.3 + phase[2])
                 + 0.3 * rng.standard_normal((height, width)))
        plane += (((x // 3).astype(int) + (y // 3).astype(int)) % 2) * 0.6 * (band + 1) / bands
        planes.append(plane)
    data = np.stack(planes)
    return (data - data.min()) / (data.max() - data.min())


def _write(path: Path, data: np.ndarray, crs: str | None, transform: object, **profile: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, height, width = data.shape
    options = {"driver": profile.pop("driver", "GTiff"), "width": width, "height": height, "count": bands,
               "dtype": str(data.dtype), "crs": crs, "transform": transform, **profile}
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
    return path


def make_rasters(out: Path) -> dict[str, Path]:
    """Write every fixture into ``out`` and return their paths by name."""
    rng = np.random.default_rng(20240607)
    out.mkdir(parents=True, exist_ok=True)
    rasters = out / "rasters"
    files: dict[str, Path] = {}
    utm = from_origin(*UTM_ORIGIN, 0.5, 0.5)

    files["utm_rgb"] = _write(rasters / "utm_rgb.tif", (_texture(rng, 200, 300, 3) * 255).astype(np.uint8), UTM, utm)
    files["wgs84_gray"] = _write(rasters / "wgs84_gray.tif", (_texture(rng, 150, 200, 1) * 255).astype(np.uint8),
                                 WGS84, from_origin(*WGS84_ORIGIN, 1e-5, 1e-5))
    rgba = (_texture(rng, 128, 128, 4) * 255).astype(np.uint8)
    rgba[3] = 255
    rgba[3, :, :64] = 0
    files["rgba"] = _write(rasters / "rgba.tif", rgba, UTM, from_origin(UTM_ORIGIN[0] + 500, UTM_ORIGIN[1], 0.5, 0.5),
                           photometric="RGB", alpha="YES")
    wide = (_texture(rng, 128, 128, 3) * 4095).astype(np.uint16)
    wide[:, 5, 5] = 65535  # hot pixels the percentile stretch must ignore
    files["uint16"] = _write(rasters / "uint16.tif", wide, UTM,
                             from_origin(UTM_ORIGIN[0] + 1000, UTM_ORIGIN[1], 0.5, 0.5))
    nodata = (_texture(rng, 128, 256, 1) * 3000 + 100).astype(np.uint16)
    nodata[:, :, 128:] = 0
    nodata[:, :20, :40] = 0
    files["nodata"] = _write(rasters / "nodata.tif", nodata, UTM,
                             from_origin(UTM_ORIGIN[0] + 1500, UTM_ORIGIN[1], 0.5, 0.5), nodata=0)
    jp2 = (_texture(rng, 80, 100, 3) * 255).astype(np.uint8)
    files["jp2"] = _write(rasters / "scene.jp2", jp2, "EPSG:3857", from_origin(2226389.8, 6446275.8, 1.0, 1.0),
                          driver="JP2OpenJPEG")
    (rasters / "sub").mkdir(parents=True, exist_ok=True)
    chip = (_texture(rng, 64, 64, 3) * 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(chip).save(rasters / "sub" / "chip.png")
    files["png"] = rasters / "sub" / "chip.png"
    jpeg = (_texture(rng, 40, 48, 3) * 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(jpeg).save(rasters / "sub" / "chip.jpg", quality=90)
    files["jpg"] = rasters / "sub" / "chip.jpg"
    (rasters / "corrupt.tif").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    files["corrupt"] = rasters / "corrupt.tif"
    whole = _write(out / "whole.tif", (_texture(rng, 256, 256, 3) * 255).astype(np.uint8), UTM, utm)
    data = whole.read_bytes()
    (rasters / "truncated.tif").write_bytes(data[: len(data) // 2])
    files["truncated"] = rasters / "truncated.tif"
    (rasters / "notes.txt").write_text("not a raster\n")
    (rasters / "README").write_text("not a raster either\n")

    many = out / "many"
    files["many_big"] = _write(many / "big.tif", (_texture(rng, 256, 384, 3) * 255).astype(np.uint8), UTM,
                               from_origin(UTM_ORIGIN[0], UTM_ORIGIN[1] - 1000, 1.0, 1.0))
    for index in range(6):
        _write(many / f"chip{index}.tif", (_texture(rng, 64, 64, 3) * 255).astype(np.uint8), UTM,
               from_origin(UTM_ORIGIN[0] + 64 * index, UTM_ORIGIN[1] - 2000, 1.0, 1.0))

    for name, seed, seconds in (("query", 11, 2.5), ("query2", 12, 2.0)):
        path = out / f"{name}.wav"
        sf.write(path, speechlike(seconds, seed=seed), 16000, subtype="PCM_16")
        files[name] = path
    captions = out / "captions"
    captions.mkdir(exist_ok=True)
    lines = []
    for index, (image, label) in enumerate((("chip.png", "texture"), ("chip.jpg", "texture"),
                                            ("chip.png", "texture"), ("chip.jpg", "texture"))):
        audio = captions / f"caption{index}.wav"
        sf.write(audio, speechlike(1.5 + 0.25 * index, seed=100 + index), 16000, subtype="PCM_16")
        lines.append({"image": f"../rasters/sub/{image}", "audio": audio.name, "label": label, "split": "test",
                      "text": f"caption number {index}"})
    (captions / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    files["manifest"] = captions / "manifest.jsonl"
    files["rasters"] = rasters
    files["many"] = many
    return files


if __name__ == "__main__":
    for key, value in make_rasters(Path(sys.argv[1] if len(sys.argv) > 1 else "raster-fixtures")).items():
        print(f"{key}: {value}")
