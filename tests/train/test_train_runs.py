"""Training runs on disk (dvan.train.runs): run folders, resume, activation copies and the restore history."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvan.train import runs


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "collection" / "manifest.jsonl"
    path.parent.mkdir()
    path.write_text("")
    return path


def test_first_run_is_named_after_collection_and_recipe(tmp_path: Path, manifest: Path) -> None:
    root = tmp_path / "runs"
    base = runs.run_base(root, manifest, "dvan-plus")
    assert base.parent == root and base.name.startswith("collection-") and base.name.endswith("-dvan-plus")
    assert runs.run_base(root, manifest, "paper") != base
    other = tmp_path / "elsewhere" / "collection" / "manifest.jsonl"  # same folder name, another collection
    assert runs.run_base(root, other, "dvan-plus") != base
    assert runs.existing_runs(root, manifest, "dvan-plus") == []  # the root need not exist
    assert runs.latest_run(root, manifest, "dvan-plus") == base
    assert runs.new_run(root, manifest, "dvan-plus") == base


def test_start_never_reuses_a_run_that_holds_files(tmp_path: Path, manifest: Path) -> None:
    root = tmp_path / "runs"
    base = runs.new_run(root, manifest, "paper")
    base.mkdir(parents=True)
    assert runs.new_run(root, manifest, "paper") == base  # still empty: a cancelled start before any epoch
    runs.log_path(base).write_text('{"event": "epoch"}\n')
    second = runs.new_run(root, manifest, "paper")
    assert second.name == f"{base.name}-2"
    second.mkdir()
    (second / runs.BEST_FILE).write_bytes(b"x")
    third = runs.new_run(root, manifest, "paper")
    assert third.name == f"{base.name}-3"
    third.mkdir()
    (base.parent / f"{base.name}-notes").mkdir()  # not a numbered run of this collection
    (base.parent / f"{base.name}-10.txt").write_text("")  # a file, not a run folder
    assert runs.existing_runs(root, manifest, "paper") == [base, second, third]
    assert runs.latest_run(root, manifest, "paper") == third
    assert runs.new_run(root, manifest, "paper") == third  # the newest is empty again


def test_numbered_runs_sort_by_number_not_by_name(tmp_path: Path, manifest: Path) -> None:
    root = tmp_path / "runs"
    base = runs.run_base(root, manifest, "paper")
    for number in (2, 10, 9):
        (base.parent / f"{base.name}-{number}").mkdir(parents=True)
    found = runs.existing_runs(root, manifest, "paper")
    assert [p.name[len(base.name):] for p in found] == ["-2", "-9", "-10"]  # no base: it was never made
    (found[-1] / runs.LOG_FILE).write_text("{}\n")
    assert runs.new_run(root, manifest, "paper").name == f"{base.name}-11"


def test_resume_needs_the_resume_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not runs.can_resume(run)
    run.mkdir()
    (run / runs.LOG_FILE).write_text("{}\n")
    assert not runs.can_resume(run)
    (run / runs.RESUME_FILE).write_bytes(b"state")
    assert runs.can_resume(run)
    assert runs.log_path(run) == run / "train_log.jsonl"


def test_install_checkpoint_copies_under_a_new_name_and_never_overwrites(tmp_path: Path) -> None:
    best = tmp_path / "run" / runs.BEST_FILE
    best.parent.mkdir()
    best.write_bytes(b"weights-1")
    models = tmp_path / "models"
    first = runs.install_checkpoint(best, models, stamp="20260101-120000")
    assert first == models / "model-20260101-120000.safetensors" and first.read_bytes() == b"weights-1"
    best.write_bytes(b"weights-2")  # the run trained again within the same second
    second = runs.install_checkpoint(best, models, stamp="20260101-120000")
    assert second == models / "model-20260101-120000-2.safetensors" and second.read_bytes() == b"weights-2"
    assert first.read_bytes() == b"weights-1"
    assert {p.name for p in models.iterdir()} == {first.name, second.name}  # no temporary left behind


def test_install_checkpoint_of_a_missing_file_leaves_nothing(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(FileNotFoundError):
        runs.install_checkpoint(tmp_path / "gone.safetensors", models)
    assert list(models.iterdir()) == []


def test_activation_history_keeps_the_replaced_model_first_and_never_the_active_one() -> None:
    history = runs.activation_history("a", ["b", "c"], "d")
    assert history == ["a", "b", "c"]
    # restoring "c": it leaves the list, the model it replaces comes first
    assert runs.activation_history("d", history, "c") == ["d", "a", "b"]
    # the shipped default ("") is a model like any other
    assert runs.activation_history("", ["a"], "a") == [""]
    long = [f"m{i}" for i in range(20)]
    assert runs.activation_history("x", long, "y", keep=3) == ["x", "m0", "m1"]
    assert len(runs.activation_history("x", long, "y")) == runs.HISTORY_LENGTH
