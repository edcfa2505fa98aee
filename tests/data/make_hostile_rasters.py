"""Generate the seeded hostile inputs of the hardening tests: rasters that try to leave the sandbox.

Run ``python tests/data/make_hostile_rasters.py OUT_DIR [PORT]`` to look at them; the tests call
:func:`make_hostile_rasters` into a temporary folder, with the port of a real localhost HTTP
server that counts the requests it gets.

``OUT/drop/`` (the folder handed to ``dvan library add``):

======================  ========================================================================
good.tif                3-band uint8 GeoTIFF, EPSG:32611, 128 x 128 -> 1 tile (must be imported)
network.vrt             a VRT whose source is ``/vsicurl/http://127.0.0.1:PORT/src.tif``
disguised.tif           the same VRT under a GeoTIFF name (GDAL goes by content, not by name)
raw_outside.vrt         a VRT raw band reading ``OUT/secret.bin``, a file outside the folder
source_outside.vrt      a VRT whose simple source is ``OUT/outside.tif``, outside the folder
inside.vrt              a VRT over good.tif with a relative path (allowed: stays in the folder)
loop.tif                a symbolic link to itself (a link loop)
======================  ========================================================================

``OUT/huge.vrt``: a 1 KB VRT declaring 2e9 x 2e9 pixels (no sources).
``OUT/sparse.tif``: a 4096 x 4096 sparse tiled GeoTIFF (nodata 0) with one written 256 px block.
``OUT/polar.tif``: a WGS84 raster whose declared extent runs from 80 N to 100 N (past the pole).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

UTM = "EPSG:32611"


def _vrt(width: int, height: int, bands: str) -> str:
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
            '  <SRS>EPSG:32611</SRS>\n'
            '  <GeoTransform>380000, 0.5, 0, 3770000, 0, -0.5</GeoTransform>\n'
            f"{bands}</VRTDataset>\n")


def _simple_band(source: str, relative: bool = False) -> str:
    return ('  <VRTRasterBand dataType="Byte" band="1">\n'
            '    <SimpleSource>\n'
            f'      <SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>\n'
            '      <SourceBand>1</SourceBand>\n'
            '      <SrcRect xOff="0" yOff="0" xSize="128" ySize="128"/>\n'
            '      <DstRect xOff="0" yOff="0" xSize="128" ySize="128"/>\n'
            '    </SimpleSource>\n'
            '  </VRTRasterBand>\n')


def _write_tif(path: Path, data: np.ndarray, transform: Affine, crs: str = UTM, **profile: object) -> Path:
    bands, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=str(data.dtype),
                       crs=crs, transform=transform, **profile) as dst:
        dst.write(data)
    return path


def make_hostile_rasters(out: Path, port: int = 8) -> dict[str, Path]:
    """Write every fixture into ``out`` (network sources point at 127.0.0.1:``port``); paths by name."""
    rng = np.random.default_rng(20261201)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    drop = out / "drop"
    drop.mkdir(exist_ok=True)
    files: dict[str, Path] = {"drop": drop}
    utm = Affine(0.5, 0.0, 380000.0, 0.0, -0.5, 3770000.0)
    pixels = rng.integers(0, 256, (3, 128, 128), dtype=np.uint8)
    files["good"] = _write_tif(drop / "good.tif", pixels, utm)
    files["outside"] = _write_tif(out / "outside.tif", pixels[:1], utm)
    secret = out / "secret.bin"
    secret.write_bytes(b"secret-bytes-" * 2000)
    files["secret"] = secret

    network = _vrt(128, 128, _simple_band(f"/vsicurl/http://127.0.0.1:{port}/src.tif"))
    (drop / "network.vrt").write_text(network)
    (drop / "disguised.tif").write_text(network)
    files["network"], files["disguised"] = drop / "network.vrt", drop / "disguised.tif"
    raw = ('  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">\n'
           f'    <SourceFilename relativeToVRT="0">{secret}</SourceFilename>\n'
           '    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>128</LineOffset>\n'
           '  </VRTRasterBand>\n')
    (drop / "raw_outside.vrt").write_text(_vrt(128, 128, raw))
    files["raw_outside"] = drop / "raw_outside.vrt"
    (drop / "source_outside.vrt").write_text(_vrt(128, 128, _simple_band(str(files["outside"]))))
    files["source_outside"] = drop / "source_outside.vrt"
    (drop / "inside.vrt").write_text(_vrt(128, 128, _simple_band("good.tif", relative=True)))
    files["inside"] = drop / "inside.vrt"
    loop = drop / "loop.tif"
    if not loop.is_symlink():
        os.symlink(loop.name, loop)
    files["loop"] = loop

    huge = out / "huge.vrt"
    huge.write_text(_vrt(2_000_000_000, 2_000_000_000, '  <VRTRasterBand dataType="Byte" band="1"/>\n'))
    files["huge"] = huge

    sparse = out / "sparse.tif"
    with rasterio.open(sparse, "w", driver="GTiff", width=4096, height=4096, count=1, dtype="uint16", nodata=0,
                       tiled=True, blockxsize=256, blockysize=256, sparse_ok=True, crs=UTM, transform=utm) as dst:
        dst.write(rng.integers(100, 4000, (256, 256), dtype=np.uint16), 1, window=Window(512, 256, 256, 256))
    files["sparse"] = sparse

    polar = rng.integers(0, 256, (1, 64, 64), dtype=np.uint8)
    files["polar"] = _write_tif(out / "polar.tif", polar, Affine(0.5, 0.0, 10.0, 0.0, -20.0 / 64, 100.0),
                                crs="EPSG:4326")
    return files


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-fixtures")
    for key, value in make_hostile_rasters(target, int(sys.argv[2]) if len(sys.argv) > 2 else 8).items():
        print(f"{key}: {value}")
