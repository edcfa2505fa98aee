"""Bad input and faults fed for real to the model, training and CLI: one line, exit code 2, nothing lost.

Checkpoints are real safetensors files made from the embedded default model with edited
headers; training runs the real loop on the tiny espeak-ng collection; disk full is a real
tmpfs mounted in a user namespace (skipped where the kernel forbids that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dvan.cli.main import main
from dvan.errors import AudioDecodeError, CheckpointError, CheckpointMismatchError
from dvan.resources import default_model_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny spoken collection of tests/data/make_tiny_collection.py and its own feature cache."""
    from make_tiny_collection import make_tiny_collection

    root = tmp_path_factory.mktemp("tiny")
    return {"manifest": make_tiny_collection(root / "collection"), "cache": root / "cache"}


def _edited_checkpoint(target: Path, edit_config: dict[str, object] | None = None, nan: bool = False,
                       info: dict[str, object] | None = None) -> Path:
    """The default model with config fields replaced (``audio.x`` for audio fields) or a NaN weight."""
    source = default_model_path()
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(source))
    config = json.loads(metadata["dvan_config"])
    for key, value in (edit_config or {}).items():
        if key.startswith("audio."):
            config["audio"][key[len("audio."):]] = value
        else:
            config[key] = value
    metadata["dvan_config"] = json.dumps(config)
    if info is not None:
        metadata["dvan_info"] = json.dumps(info)
    if nan:
        name = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)
        tensors[name] = tensors[name].clone()
        tensors[name][0, 0] = float("nan")
    save_file(tensors, str(target), metadata=metadata)
    return target


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize(("field", "value", "said"), [
    ("audio_dim", -5, "'audio_dim' is -5"),
    ("audio_dim", 1e9, "'audio_dim' must be an integer"),
    ("audio.hop_length", 0, "'audio.hop_length' is 0"),
    ("audio.sample_rate", -16000, "'audio.sample_rate' is -16000"),
    ("backbone", "resnet-9000", "'backbone' is 'resnet-9000'"),
    ("dropout", "lots", "'dropout' must be a number"),
    ("audio.normalize", "yes", "'audio.normalize' must be true or false"),
    ("audio_branch", "transformer", "'audio_branch' is 'transformer'"),
])
def test_invalid_checkpoint_config_is_one_line_naming_file_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, said: str) -> None:
    checkpoint = _edited_checkpoint(tmp_path / "edited.safetensors", {field: value})
    before = checkpoint.read_bytes()
    code = main(["train", str(tmp_path / "missing.jsonl"), str(tmp_path / "run"), "--init", str(checkpoint),
                 "--device", "cpu", "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert str(checkpoint) in line and said in line and "invalid model config" in line
    assert checkpoint.read_bytes() == before and not (tmp_path / "run").exists()


def test_huge_claimed_dimension_is_refused_from_the_header_without_allocating(tmp_path: Path) -> None:
    # 60000 fusion units would be about 550 MB of float32 weights for the (512-unit) tensors in the file
    checkpoint = _edited_checkpoint(tmp_path / "huge.safetensors", {"fusion_dim": 60000})
    script = textwrap.dedent(f"""
        import resource, sys
        import torch  # noqa: F401 (its own memory is part of the baseline)
        from dvan.errors import CheckpointMismatchError
        from dvan.model.checkpoint import load_checkpoint
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_checkpoint({str(checkpoint)!r})
        except CheckpointMismatchError as exc:
            print(str(exc))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(grown_mb)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    message, grown = done.stdout.strip().splitlines()
    assert str(checkpoint) in message and "wrong shape" in message and "(60000, 1024)" in message
    assert float(grown) < 150, f"peak memory grew {grown} MB while refusing the checkpoint"


def test_nan_weights_marked_trained_are_refused(tmp_path: Path, tiny: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from dvan.model.checkpoint import load_checkpoint

    checkpoint = _edited_checkpoint(tmp_path / "nan.safetensors", nan=True, info={"trained": True})
    with pytest.raises(CheckpointError, match="hold NaN or Inf"):
        load_checkpoint(checkpoint)
    report = tmp_path / "report.json"
    code = main(["eval", str(checkpoint), str(tiny["manifest"]), "--json", str(report), "--device", "cpu",
                 "--cache-dir", str(tiny["cache"]), "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and str(checkpoint) in line and "NaN or Inf" in line and not report.exists()
    # the untouched default model still loads
    model, info = load_checkpoint(default_model_path())
    assert info["trained"] is True
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        load_checkpoint(_edited_checkpoint(tmp_path / "narrow.safetensors", {"audio_dim": 512}))


# ------------------------------------------------------------------------------------------ training


def test_out_dir_epochs_seed_and_device_are_checked_before_any_work(
        tmp_path: Path, tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me\n")
    base = ["train", str(tiny["manifest"])]
    tail = ["--device", "cpu", "--cache-dir", str(tiny["cache"]), "--quiet"]
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "best.safetensors").write_bytes(b"an earlier model")
    cases = [
        ([str(a_file)], f"{a_file}: OUT_DIR is an existing file"),
        ([str(a_file / "run")], "cannot write in OUT_DIR"),
        ([str(earlier), "--epochs", "0"], "epochs must be at least 1, got 0"),
        ([str(earlier), "--epochs", "-4"], "epochs must be at least 1, got -4"),
        ([str(earlier), "--seed", "-1"], "the seed must be 0 or more"),
        ([str(earlier), "--device", "gpu9"], "device 'gpu9' is not a device name"),
    ]
    for extra, said in cases:
        code = main(base + extra[:1] + tail + extra[1:])  # the case's options come last and win
        captured = capsys.readouterr()
        assert code == 2, extra
        assert said in _one_error_line(captured.err), extra
        assert "best checkpoint" not in captured.out
    assert a_file.read_text() == "keep me\n"
    assert sorted(p.name for p in earlier.iterdir()) == ["best.safetensors"]
    assert (earlier / "best.safetensors").read_bytes() == b"an earlier model"


def _small_manifest(tiny: dict[str, Path], target: Path) -> Path:
    """Two classes, one train image with both captions and one val image with one caption each."""
    kept = []
    for line in tiny["manifest"].read_text().splitlines():
        record = json.loads(line)
        wanted = {"stripes00", "dots00"} if record["split"] == "train" else {"stripes03", "dots03"}
        if Path(record["image"]).stem in wanted and not (record["split"] == "val" and record["audio"].endswith("_1.wav")):
            kept.append({**record, "image": str(tiny["manifest"].parent / record["image"]),
                         "audio": str(tiny["manifest"].parent / record["audio"])})
    target.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return target


def test_cold_and_warm_cache_train_the_same_model_and_leftovers_are_cleaned(tiny: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    from dvan.train import make_train_config, train
    from dvan.train.config import AugmentConfig

    manifest = _small_manifest(tiny, tmp_path / "small.jsonl")
    # dvan-plus keeps its dropout (torch's generator matters) without the costly waveform copies
    config = make_train_config("dvan-plus", batch_size=6, warmup_steps=0, epochs=1, augment=AugmentConfig())
    cold_cache = tmp_path / "cold-cache"
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    cold.mkdir()
    # what kill -9 during save_checkpoint/save_resume leaves: safetensors' own temporary file and ours
    leftovers = [cold / ".tmpAb3xZ9", cold / "resume.safetensors.partial", cold / "best.safetensors.partial"]
    for leftover in leftovers:
        leftover.write_bytes(b"\0" * 4096)
    (cold / ".tmp-notes.txt").write_text("not ours")
    train(manifest, config, cold, device="cpu", cache_dir=cold_cache)
    assert not any(p.exists() for p in leftovers)
    assert (cold / ".tmp-notes.txt").read_text() == "not ours"
    assert sorted(p.name for p in cold.iterdir()) == [".tmp-notes.txt", "best.safetensors", "resume.safetensors",
                                                      "train_log.jsonl"]
    train(manifest, config, warm, device="cpu", cache_dir=cold_cache)
    a = load_file(str(cold / "resume.safetensors"))
    b = load_file(str(warm / "resume.safetensors"))
    for key in a:
        if key.startswith(("model.", "optim.")):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) for a private tmpfs")
def test_disk_full_during_training_is_one_line_and_keeps_what_was_there(tiny: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    # OUT_DIR and the feature cache on a 64 KB tmpfs: caching the first audio features fills it
    command = (f"mount -t tmpfs -o size=64k tmpfs {mount} && mkdir {mount}/run && echo kept > {mount}/run/notes.txt "
               f"&& {sys.executable} -m dvan.cli.main train {tiny['manifest']} {mount}/run --epochs 1 --device cpu "
               f"--cache-dir {mount}/cache --quiet; echo rc=$?; ls -A {mount}/run; "
               f"find {mount}/cache -name '*partial*' | wc -l; cat {mount}/run/notes.txt")
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    if "rc=" not in done.stdout:
        pytest.skip(f"cannot mount a private tmpfs here: {done.stderr.strip()[:200]}")
    line = _one_error_line(done.stderr)
    listing = done.stdout.split("rc=", 1)[1].split()
    assert listing[0] == "2", done.stdout
    assert "disk full" in line and f"{mount}/run" in line and "resumes" in line
    # nothing half-written is left in OUT_DIR or the cache, and the earlier file is intact
    assert listing[1:] == ["notes.txt", "0", "kept"], listing


# ------------------------------------------------------------------------------------------ inputs


def test_manifest_with_a_non_utf8_byte_names_file_and_line(tmp_path: Path, tiny: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    lines = tiny["manifest"].read_bytes().splitlines(keepends=True)
    bad = tiny["manifest"].parent / "latin1.jsonl"
    bad.write_bytes(lines[0] + lines[1].replace(b'"train"', b'"tr\xe9in"') + b"".join(lines[2:]))
    code = main(["train", str(bad), str(tmp_path / "run"), "--device", "cpu", "--cache-dir", str(tiny["cache"]),
                 "--quiet"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"{bad}, line 2: not UTF-8 text (byte 0xe9" in line
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_audio_that_is_a_folder_or_a_fifo_is_called_what_it_is(tmp_path: Path, tiny: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dvan.audio.io import read_audio

    folder = tmp_path / "folder.wav"
    folder.mkdir()
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioDecodeError, match="is a folder, not an audio file"):
        read_audio(folder)
    with pytest.raises(AudioDecodeError, match="is not a regular file"):
        read_audio(fifo)  # never opened: opening a FIFO would block
    with pytest.raises(AudioDecodeError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")
    record = json.loads(tiny["manifest"].read_text().splitlines()[0])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({**record, "image": str(tiny["manifest"].parent / record["image"]),
                                    "audio": str(fifo)}) + "\n")
    assert main(["train", str(manifest), str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 2
    assert f"audio file {fifo} is not a regular file" in _one_error_line(capsys.readouterr().err)


def test_float_audio_at_1e30_gives_the_features_of_the_same_sound(tmp_path: Path) -> None:
    from dvan.audio.features import waveform_features
    from dvan.audio.io import read_audio
    from dvan.model.checkpoint import read_validated_metadata

    config, _ = read_validated_metadata(default_model_path())
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    sound = (0.5 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    quiet, loud = tmp_path / "quiet.wav", tmp_path / "loud.wav"
    sf.write(quiet, sound, 16000, subtype="FLOAT")
    sf.write(loud, np.stack([sound, sound], axis=1) * np.float32(1e30), 16000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # librosa's overflow warnings fail the test
        expected = waveform_features(read_audio(quiet), config.audio)
        got = waveform_features(read_audio(loud), config.audio)
    assert got.frames == expected.frames > 0
    np.testing.assert_allclose(got.grid, expected.grid, atol=1e-3)


def test_eval_speak_and_captions_refuse_bad_outputs_and_values_before_work(
        tmp_path: Path, tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"image": "i.png", "label": "a", "split": "train", "text": "a red roof"}) + "\n")
    cases = [
        (["eval", str(default_model_path()), str(tiny["manifest"]), "--json", str(folder), "--quiet"],
         f"--json {folder}: is a folder"),
        (["eval", str(default_model_path()), str(tiny["manifest"]), "--pr-curve", str(a_file / "pr.png"), "--quiet"],
         "is a file, not a folder"),
        (["speak", str(captions), str(a_file), "--quiet"], f"{a_file}: OUT_DIR is an existing file"),
        (["captions", str(tmp_path / "lib"), "--tile", "1", "--top", "0"], "--top 0: ask for at least 1"),
        (["captions", str(tmp_path / "lib"), "--image", str(fifo)], f"{fifo}: is not a regular file"),
        (["captions", str(tmp_path / "lib"), "--image", str(folder)], f"{folder}: is a folder"),
        (["info", "--device", "cuda:x"], None),
    ]
    for argv, said in cases:
        code = main(argv)
        captured = capsys.readouterr()
        if said is None:  # info reports a bad device among what is missing instead of failing
            assert code == 0 and "device 'cuda:x' is not a device name" in captured.out
            continue
        assert code == 2, argv
        assert said in _one_error_line(captured.err), argv
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"] and a_file.read_text() == "kept"
