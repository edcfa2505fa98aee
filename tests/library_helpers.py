"""Shared, cached set-up of the library and search tests (built once per test process).

Everything heavy (generated rasters, small random-weight checkpoints, the real efficientnet-lite0
backbone, one imported reference library) is built on first use and reused by every test
module; tests that change a library work on their own copy.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from make_rasters import make_rasters

from dvan.config import AudioConfig, ModelConfig  # noqa: E402
from dvan.library import ImportReport, Library, import_paths  # noqa: E402
from dvan.model.checkpoint import save_checkpoint  # noqa: E402
from dvan.model.dvan import DVAN  # noqa: E402
from dvan.model.factory import ModelBundle, create_model  # noqa: E402
from dvan.model.image_branch import Backbone, create_backbone  # noqa: E402

#: Tile size of the test libraries (tiny rasters, a few tiles each).
TILE = 128
#: A small model: 4 s of audio, d3 = 256; d4 stays the paper's 512.
CONFIG = ModelConfig(audio=AudioConfig(max_frames=800), audio_dim=256)


@functools.cache
def workdir() -> Path:
    """A temporary folder removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="dvan-library-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def fixtures() -> dict[str, Path]:
    """The files of tests/data/make_rasters.py."""
    return make_rasters(workdir() / "fixtures")


@functools.cache
def checkpoint(seed: int = 0, trained: bool = False) -> Path:
    """A random-weight checkpoint (marked trained only when asked: for CLI tests of the policy)."""
    torch.manual_seed(seed)
    model = DVAN(CONFIG)
    with torch.no_grad():  # a wider spread of logits than the default init gives
        model.fusion.classifier.weight.mul_(8.0)
    name = f"model-{seed}-{'trained' if trained else 'untrained'}.safetensors"
    return save_checkpoint(model, workdir() / name, info={"trained": trained, "purpose": "tests"})


@functools.cache
def backbone() -> Backbone:
    """The real efficientnet-lite0 with its ImageNet weights, on the CPU."""
    return create_backbone("efficientnet-lite0", "cpu")


def bundle(seed: int = 0) -> ModelBundle:
    """The model of :func:`checkpoint` on the CPU, sharing the cached backbone."""
    loaded = create_model(checkpoint=checkpoint(seed), device="cpu")
    loaded._backbone = backbone()
    return loaded


def reference(gallery_dtype: str = "float32") -> tuple[Path, ImportReport]:
    """The rasters folder imported once with model 0 (do not modify: copy it with :func:`copy_of`)."""
    return _reference(gallery_dtype)


@functools.cache
def _reference(gallery_dtype: str) -> tuple[Path, ImportReport]:
    path = workdir() / f"reference-{gallery_dtype}"
    library = Library.create(path, tile_size=TILE, gallery_dtype=gallery_dtype)
    report = import_paths(library, [fixtures()["rasters"]], bundle=bundle(0))
    library.close()
    return path, report


def copy_of(source: Path, target: Path) -> Path:
    """A copy of a library folder to modify."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def read_commits(child: subprocess.Popen[str], wanted: int, seconds: float = 120) -> int:
    """Read an importing child's stdout until ``wanted`` "committed" lines came (or it ended, or time ran out)."""
    assert child.stdout is not None
    committed = 0
    deadline = time.monotonic() + seconds
    while committed < wanted and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        committed += line.startswith("committed")
    return committed


@functools.cache
def clean_many() -> Path:
    """The "many" folder imported once with model 0, float16 gallery (do not modify: copy it with :func:`copy_of`)."""
    path = workdir() / "clean-many"
    library = Library.create(path, tile_size=TILE)
    import_paths(library, [fixtures()["many"]], bundle=bundle(0))
    library.close()
    return path
