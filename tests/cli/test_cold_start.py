"""Cold start: what a fresh ``dvan`` process imports, and the numba kernels' on-disk cache.

Run as real subprocesses with ``python -X importtime``, which lists every module a process
imports; the assertions are about modules, never about times (those are in
``benchmarks/cold_start.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dvan.cli.main import COMMAND_MODULES
from dvan.resources import resources_dir

ROOT = Path(__file__).resolve().parents[2]
#: Modules that cost seconds to import; none of them may load for a --help or an argument error.
HEAVY = ("torch", "librosa", "rasterio", "PySide6", "numba", "scipy", "ray")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def imported_modules(*argv: str, expect_rc: int = 0) -> set[str]:
    """Top-level packages a ``python -X importtime -m dvan.cli.main ARGV`` process imports."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "dvan.cli.main", *argv], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == expect_rc, result.stderr[-2000:]
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules.add(name.split(".")[0])
    assert "dvan" in modules  # the trace really lists the process's imports
    return modules


@pytest.mark.parametrize("argv", [("--help",), ("search", "--help"), ("library", "add", "--help")],
                         ids=["help", "search-help", "library-add-help"])
def test_help_imports_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert not imported_modules(*argv) & set(HEAVY)


def test_every_command_help_and_an_argument_error_import_nothing_heavy() -> None:
    for name in COMMAND_MODULES:
        assert not imported_modules(name, "--help") & set(HEAVY), name
    # argparse rejects these before any command runs: exit code 2, no heavy import
    assert not imported_modules("search", "library-without-query", expect_rc=2) & set(HEAVY)
    assert not imported_modules("search", "lib", "--wav", "q.wav", "--top", "many", expect_rc=2) & set(HEAVY)
    assert not imported_modules("no-such-command", expect_rc=2) & set(HEAVY)


def test_spoken_search_does_not_import_librosa_rasterio_or_numba(tmp_path: Path) -> None:
    library = tmp_path / "library"
    subprocess.run([sys.executable, "-m", "dvan.cli.main", "library", "create", str(library)], cwd=ROOT, env=_env(),
                   check=True, capture_output=True, timeout=120)
    query = resources_dir() / "demo" / "queries" / "harbor.wav"
    # the audio path (the default model's own mode, hybrid, reads the transcript: the recogniser and encoder load)
    modules = imported_modules("search", str(library), "--wav", str(query), "--json", "--mode", "audio")
    assert "torch" in modules  # the audio branch ran
    assert not modules & {"librosa", "rasterio", "numba", "scipy", "PySide6"}


def test_library_help_lists_the_store_gallery_dtypes() -> None:
    from dvan.cli.library import GALLERY_DTYPE_NAMES
    from dvan.library.store import GALLERY_DTYPES

    assert sorted(GALLERY_DTYPE_NAMES) == sorted(GALLERY_DTYPES)


_KERNEL_RUN = """
import numpy as np
from dvan.search import _fused
gallery = np.linspace(-1, 1, 4 * 8, dtype=np.float32).reshape(4, 8)
gallery.setflags(write=False)
out = np.empty(4, np.float32)
_fused.logits_f32(gallery, np.arange(4, dtype=np.int64), np.zeros(8, np.float32), np.ones(8, np.float32),
                  np.float32(0.5), out)
stats = _fused.logits_f32.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), stats.cache_path)
"""


def test_numba_kernels_load_from_the_disk_cache_in_a_second_process(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"

    def run() -> tuple[int, int, str]:
        result = subprocess.run([sys.executable, "-c", _KERNEL_RUN], cwd=ROOT, env=_env(NUMBA_CACHE_DIR=str(cache)),
                                capture_output=True, text=True, timeout=300, check=True)
        hits, misses, path = result.stdout.split()
        return int(hits), int(misses), path

    first = run()
    assert first[:2] == (0, 1) and Path(first[2]).is_relative_to(cache)  # compiled once, written to the cache
    second = run()
    assert second[:2] == (1, 0)  # a warm install never recompiles
