"""Sharded libraries: mounts checked on open, search over shards merged exactly, and Ray kept optional.

The merge test builds two shards and one library holding the same tiles (the shards' sources
imported one shard after the other) and asserts the mounted search returns the same ranking,
in this process and in local worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cluster_helpers import chips, shards
from library_helpers import bundle, checkpoint, fixtures

from dvan.cli.main import main
from dvan.cluster.mount import is_mount, open_mount, read_mount, write_mount
from dvan.cluster.sharded_search import ShardedSearch, ShardResult, merge_top_k, open_search
from dvan.errors import MountError
from dvan.library import Library
from dvan.search.engine import SearchEngine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", name="shards")
def shards_fixture() -> tuple[Path, Path]:
    """(mount file of shards "big" and "chips", one library holding the same tiles in that order)."""
    return shards()


def _table(hits: list) -> list[tuple[str, tuple[int, ...]]]:
    return [(h.tile.source.name, h.tile.window.as_tuple()) for h in hits]


def test_mount_lists_shards_relative_to_itself_and_refuses_what_does_not_fit(shards: tuple[Path, Path],
                                                                             tmp_path: Path) -> None:
    mount, single = shards
    assert is_mount(mount) and not is_mount(single) and not is_mount(fixtures()["query"])
    assert json.loads(mount.read_text())["shards"] == ["big", "chips"]  # relative: the folder can move
    assert [p.name for p in read_mount(mount)] == ["big", "chips"]

    (tmp_path / "broken.json").write_text('{"dvan_mount": 1, "shards": ["gone"]}')
    with pytest.raises(MountError, match="shard gone is missing"):
        open_mount(tmp_path / "broken.json")
    (tmp_path / "bad.json").write_text('{"dvan_mount": 1, "shards": []}')
    with pytest.raises(MountError, match="non-empty list"):
        open_mount(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("{dvan_mount")
    with pytest.raises(MountError, match="not a readable mount file"):
        open_mount(tmp_path / "text.json")
    with pytest.raises(MountError, match="listed twice"):
        write_mount(tmp_path / "twice.json", [single, single])
    Library.create(tmp_path / "vgg", backbone="vgg16-fc7").close()
    with pytest.raises(MountError, match="holds vgg16-fc7 features but shard .* holds efficientnet-lite0"):
        write_mount(tmp_path / "mixed.json", [single, tmp_path / "vgg"])
    assert not (tmp_path / "mixed.json").exists()


def test_merge_breaks_ties_by_shard_then_row_like_one_library() -> None:
    rng = np.random.default_rng(3)
    logits = [rng.choice([0.5, 1.0, 2.0], size=n).astype(np.float32) for n in (7, 5, 9)]
    offsets = np.cumsum([0, 7, 5])
    results = [ShardResult(np.arange(len(v)), v, len(v), ()) for v in logits]
    merged = merge_top_k(results, 10)
    # the naive reference: one library holding the shards one after the other, sorted by (-logit, row)
    flat = [(-float(v), int(offsets[s]) + r) for s, values in enumerate(logits) for r, v in enumerate(values)]
    expected = sorted(flat)[:10]
    assert [(-logit, int(offsets[s]) + r) for s, r, logit in merged] == expected


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-processes"])
def test_mounted_search_equals_one_library_holding_the_same_tiles(shards: tuple[Path, Path], workers: int) -> None:
    mount, single_path = shards
    model = bundle(0)
    with Library.open(single_path) as single:
        reference = SearchEngine(single, model)
        shards_open = open_mount(mount)
        engine = ShardedSearch(shards_open, model, workers=workers)
        try:
            assert not engine.needs_projection and engine.candidates().size == 12
            for wav in ("query", "query2"):
                query = reference.encode_file(fixtures()[wav])
                for top in (3, 12):
                    expected, merged = reference.search(query, top_k=top), engine.search(query, top_k=top)
                    assert _table(merged) == _table(expected)
                    np.testing.assert_allclose([h.logit for h in merged], [h.logit for h in expected], atol=1e-4)
                    assert [h.rank for h in merged] == list(range(1, top + 1))
            # filters: a source held by one shard, and a box
            query = reference.encode_file(fixtures()["query"])
            wanted = [chips()[2], fixtures()["many_big"]]
            assert _table(engine.search(query, top_k=12, sources=wanted)) == \
                _table(reference.search(query, top_k=12, sources=wanted))
            box = single.tiles()[0].lonlat_bounds
            assert box is not None
            assert _table(engine.search(query, top_k=12, bbox=box)) == _table(reference.search(query, top_k=12,
                                                                                               bbox=box))
            assert {h.shard.name for h in engine.search(query, top_k=12)} == {"big", "chips"}
            with pytest.raises(Exception, match="not a source of any shard"):
                engine.search(query, top_k=3, sources=[fixtures()["utm_rgb"]])
        finally:
            engine.close()
            for library in shards_open:
                library.close()


def test_search_command_reads_a_mount_where_it_reads_a_library(shards: tuple[Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    mount, single = shards
    again = tmp_path / "again.json"
    assert main(["library", "mount", str(again), *(str(p) for p in read_mount(mount))]) == 0
    assert "mounted 2 shard(s), 12 tiles" in capsys.readouterr().out
    common = ["--wav", str(fixtures()["query"]), "--model", str(checkpoint(0, trained=True)), "--top", "12", "--json",
              "--no-transcript", "--workers", "1"]
    assert main(["search", str(again), *common]) == 0
    mounted = json.loads(capsys.readouterr().out)
    assert main(["search", str(single), *common]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert mounted["searched"] == alone["searched"] == 12
    assert [(h["source"], h["window"]) for h in mounted["hits"]] == [(h["source"], h["window"]) for h in alone["hits"]]
    assert {Path(h["shard"]).name for h in mounted["hits"]} == {"big", "chips"}
    with open_search(again, bundle(0)) as engine:
        assert isinstance(engine, ShardedSearch)


# Runs the command line once per argument list, with Ray made unimportable (a desktop install without the extra).
NO_RAY = """
import json, sys
sys.modules["ray"] = None
from dvan.cli.main import main
for argv in json.loads(sys.argv[1]):
    print(main(argv))
    sys.stderr.flush()
assert "torch" not in sys.modules, "torch was loaded before the missing extra was reported"
"""


def test_ray_options_without_ray_say_how_to_install_it(shards: tuple[Path, Path]) -> None:
    mount, single = shards
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = [["library", "add", str(single), str(chips()[0]), "--ray", "auto"],
            ["search", str(mount), "--wav", str(fixtures()["query"]), "--ray", "auto"]]
    result = subprocess.run([sys.executable, "-c", NO_RAY, json.dumps(runs)], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]  # the CLI's exit code of a domain error, for each command
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all('pip install ".[cluster]"' in line for line in lines), result.stderr
