"""Several manifests trained and evaluated as one collection: how classes are joined, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvan.cli.main import main
from dvan.data.collections import LabelPolicy, normalise_label, read_collections
from dvan.errors import ManifestError
from dvan.model.factory import create_model


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny collections; the second spells its classes its own way and names one by a synonym."""
    from make_tiny_collection import make_tiny_collection

    root = tmp_path_factory.mktemp("two")
    return {"a": make_tiny_collection(root / "first"),
            "b": make_tiny_collection(root / "second", seed=1,
                                      label_names={"stripes": "Stripes", "dots": "Dotted Field", "meadow": "MEADOW"}),
            "cache": root / "cache", "root": root}


def test_normalised_names_merge_and_aliases_join_synonyms(two: dict[str, Path]) -> None:
    assert normalise_label("Storage Tanks") == normalise_label("storagetanks") == "storagetanks"
    merged = read_collections([two["a"], two["b"]])
    assert sorted({e.label for e in merged}) == ["dots", "dottedfield", "meadow", "stripes"]
    joined = read_collections([two["a"], two["b"]], LabelPolicy("merge", {"Dotted Field": "dots"}))
    assert sorted({e.label for e in joined}) == ["dots", "meadow", "stripes"]
    assert len(joined) == 60
    apart = read_collections([two["a"], two["b"]], LabelPolicy("separate"))
    assert sorted({e.label for e in apart}) == ["first:dots", "first:meadow", "first:stripes",
                                                "second:Dotted Field", "second:MEADOW", "second:Stripes"]
    # one manifest keeps its labels as written, whatever the policy
    assert {e.label for e in read_collections(two["b"], LabelPolicy("separate"))} == {"Stripes", "Dotted Field", "MEADOW"}


def test_one_image_with_two_classes_across_manifests_is_refused(two: dict[str, Path], tmp_path: Path) -> None:
    lines = [json.loads(x) for x in two["a"].read_text().splitlines()]
    lines[0]["label"] = "meadow"  # stripes00 relabelled, pointing at the first collection's image
    lines[0]["image"] = str((two["a"].parent / lines[0]["image"]).resolve())
    lines[0]["audio"] = str((two["a"].parent / lines[0]["audio"]).resolve())
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(ManifestError, match=r"other\.jsonl, line 1: .*stripes00.png is class 'meadow' here but 'stripes'"):
        read_collections([two["a"], other])
    with pytest.raises(ManifestError, match="label mode 'union' is unknown"):
        LabelPolicy("union")  # type: ignore[arg-type]


def test_cli_trains_one_model_on_two_manifests_and_evaluates_them(two: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    aliases = tmp_path / "aliases.json"
    aliases.write_text(json.dumps({"dotted field": "dots"}))
    out = tmp_path / "run"
    code = main(["train", str(two["a"]), str(two["b"]), str(out), "--epochs", "1", "--label-aliases", str(aliases),
                 "--device", "cpu", "--cache-dir", str(two["cache"]), "--quiet"])
    assert code == 0, capsys.readouterr().err
    bundle = create_model(checkpoint=out / "best.safetensors", device="cpu")
    assert bundle.info["manifest"] == [str(two["a"].resolve()), str(two["b"].resolve())]
    assert bundle.info["labels"] == {"mode": "merge", "aliases": {"dottedfield": "dots"}}
    start = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert start["train_captions"] == 36 and start["val_captions"] == 12  # both collections' splits

    report_path = tmp_path / "both.json"
    code = main(["eval", str(out / "best.safetensors"), str(two["a"]), str(two["b"]), "--label-aliases", str(aliases),
                 "--json", str(report_path), "--device", "cpu", "--cache-dir", str(two["cache"]), "--quiet"])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["counts"]["images"] == 6 and report["counts"]["classes"] == 3
    code = main(["eval", str(out / "best.safetensors"), str(two["a"]), str(two["b"]), "--labels", "separate",
                 "--json", str(report_path), "--device", "cpu", "--cache-dir", str(two["cache"]), "--quiet"])
    assert code == 0 and json.loads(report_path.read_text())["counts"]["classes"] == 6
    assert main(["eval", str(out / "best.safetensors"), str(two["a"]), "--label-aliases", str(tmp_path / "none.json"),
                 "--device", "cpu", "--quiet"]) == 2
    assert "cannot read label aliases" in capsys.readouterr().err
