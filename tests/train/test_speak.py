"""``dvan speak``: real espeak-ng and flite voices into 16 kHz WAVs plus a valid manifest; determinism, resume,
skips, cancel, per-split voices and the command line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from dvan.cli.main import main
from dvan.data.manifest import read_manifest
from dvan.data.speak import SpeakConfig, read_captions, speak_captions
from dvan.errors import Cancelled, SpeechError
from dvan.progress import CancelToken, Progress

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                                reason="needs the Debian packages espeak-ng and flite (apt-get install espeak-ng flite)")

VOICES = ("espeak:en-us+m3", "espeak:en-gb+f2", "flite:slt", "flite:kal16")


@pytest.fixture()
def captions(tmp_path: Path) -> dict[str, Path]:
    from make_captions import make_captions

    return make_captions(tmp_path / "captions")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.wav"))}


def test_wavs_are_16k_mono_pcm16_and_manifest_validates(captions: dict[str, Path], tmp_path: Path) -> None:
    reports: list[Progress] = []
    report = speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=VOICES), progress=reports.append)
    assert (report.spoken, report.reused, len(report.skipped)) == (5, 0, 1)
    entries = read_manifest(report.manifest or "")
    assert len(entries) == 5
    assert {e.split for e in entries} == {"train", "val", "test"}
    assert all(e.speaker in VOICES and e.text for e in entries)
    assert {e.image.name for e in entries} == {"airport00.png", "forest00.png", "river00.png", "beach00.png"}
    for entry in entries:
        info = sf.info(str(entry.audio))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.8 < info.duration < 6.0
    # the two captions of one image get two different voices
    airport = [e.speaker for e in entries if e.label == "airport"]
    assert len(set(airport)) == 2
    assert reports[0].done == 0 and reports[-1].done == reports[-1].total == 6


def test_same_seed_gives_identical_bytes_whatever_the_order_and_threads(captions: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    config = SpeakConfig(voices=VOICES, seed=7)
    first = speak_captions(captions["jsonl"], tmp_path / "a", config, jobs=2)
    lines = captions["jsonl"].read_text().splitlines()
    reordered = captions["jsonl"].with_name("reordered.jsonl")
    # images in reverse order (captions of one image keep their order: the k-th caption of an image is its key)
    reordered.write_text("\n".join(sorted(lines, key=lambda line: json.loads(line)["image"], reverse=True)) + "\n")
    second = speak_captions(reordered, tmp_path / "b", config, jobs=1)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    # same caption -> same voice (captions are keyed by image and position among that image's lines)
    assert ({(e.text, e.speaker) for e in first.entries} == {(e.text, e.speaker) for e in second.entries})
    other = speak_captions(captions["jsonl"], tmp_path / "c", SpeakConfig(voices=VOICES, seed=8))
    assert _hashes(tmp_path / "c") != _hashes(tmp_path / "a")
    assert [e.speaker for e in other.entries] != [e.speaker for e in first.entries]


def test_rerun_reuses_finished_files(captions: dict[str, Path], tmp_path: Path) -> None:
    config = SpeakConfig(voices=VOICES)
    speak_captions(captions["jsonl"], tmp_path / "out", config)
    wavs = sorted((tmp_path / "out").rglob("*.wav"))
    mtimes = [p.stat().st_mtime_ns for p in wavs]
    wavs[0].unlink()
    again = speak_captions(captions["jsonl"], tmp_path / "out", config)
    assert (again.spoken, again.reused) == (1, 4)
    assert [p.stat().st_mtime_ns for p in wavs[1:]] == mtimes[1:]
    assert not list((tmp_path / "out").rglob("*.partial"))
    # a changed setting names new files instead of reusing stale ones
    changed = speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=VOICES, rate_range=(120, 130)))
    assert (changed.spoken, changed.reused) == (5, 0)


def test_unspeakable_captions_are_reported_by_line_and_skipped(captions: dict[str, Path], tmp_path: Path) -> None:
    report = speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=VOICES))
    [empty] = report.skipped
    assert empty.line == 4 and "line 4" in empty.where and "no words" in empty.reason
    # punctuation only (RSICD has captions that are just "."): no words, skipped before the engine runs
    punct = tmp_path / "punct.jsonl"
    image = captions["root"] / "images/beach/beach00.png"
    punct.write_text(json.dumps({"image": str(image), "label": "beach", "split": "test", "text": "."}) + "\n"
                     + json.dumps({"image": str(image), "label": "beach", "split": "test", "text": "Sand ."}) + "\n")
    report = speak_captions(punct, tmp_path / "punct", SpeakConfig(voices=("espeak:en-us",)))
    assert report.spoken == 1
    [silent] = report.skipped
    assert silent.line == 1 and "no words" in silent.reason
    # nothing speakable at all is an error naming the first problem
    punct.write_text(json.dumps({"image": str(image), "label": "beach", "split": "test", "text": " "}) + "\n")
    with pytest.raises(SpeechError, match="line 1: no words"):
        speak_captions(punct, tmp_path / "none", SpeakConfig(voices=("espeak:en-us",)))


def test_cancel_stops_keeps_finished_files_and_writes_no_manifest(captions: dict[str, Path], tmp_path: Path) -> None:
    token = CancelToken()

    def progress(report: Progress) -> None:
        if report.done >= 1:
            token.cancel()

    with pytest.raises(Cancelled):
        speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=VOICES), jobs=1, progress=progress,
                       cancel=token)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    written = len(list((tmp_path / "out").rglob("*.wav")))
    assert written < 5
    finished = speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=VOICES))
    assert finished.reused == written and finished.spoken == 5 - written


def test_split_voices_keep_held_out_voices_to_their_split(captions: dict[str, Path], tmp_path: Path) -> None:
    seen = ("espeak:en-us+m3", "flite:slt")
    unseen = ("espeak:en-029+m7", "flite:rms")
    config = SpeakConfig(voices=seen, split_voices={"test": unseen})
    report = speak_captions(captions["ucm"], tmp_path / "out", config, manifest_name="unseen.jsonl")
    entries = read_manifest(tmp_path / "out" / "unseen.jsonl")
    assert {e.speaker for e in entries if e.split == "test"} <= set(unseen)
    assert {e.speaker for e in entries if e.split != "test"} <= set(seen)
    # train/val audio is shared with a run that uses the seen voices everywhere
    base = speak_captions(captions["ucm"], tmp_path / "out", SpeakConfig(voices=seen))
    assert base.reused == 3 and base.spoken == 2
    assert report.spoken == 5


def test_reads_ucm_captions_json(captions: dict[str, Path]) -> None:
    parsed = read_captions(captions["ucm"])
    assert [c.key for c in parsed[:3]] == ["images/airport/airport00#0", "images/airport/airport00#1",
                                           "images/forest/forest00#0"]
    assert parsed[0].label == "airport" and parsed[0].image.is_file()
    assert "item 3 caption 1" in parsed[3].where and parsed[3].text == ""


@pytest.mark.parametrize(("line", "words"), [
    ("{not json", "line 2: not valid JSON"),
    ('{"image": "a.png", "label": "x", "split": "holdout", "text": "hi"}', "line 2: unknown split 'holdout'"),
    ('{"image": "a.png", "split": "train", "text": "hi"}', "line 2: missing or non-string label"),
    ('{"image": "a.png", "label": "x", "split": "train", "txt": "hi"}', "line 2: unknown field(s) ['txt']"),
])
def test_bad_caption_file_names_the_line(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"image": "a.png", "label": "x", "split": "train", "text": "hi"}\n' + line + "\n")
    with pytest.raises(SpeechError) as info:
        read_captions(path)
    assert words in str(info.value) and "bad.jsonl" in str(info.value)


@pytest.mark.parametrize(("voice", "words"), [
    ("espeak:en-zz+m3", "no language 'en-zz'"),
    ("espeak:en-us+nosuchvariant", "no variant 'nosuchvariant'"),
    ("flite:nosuchvoice", "no general voice 'nosuchvoice'"),
    ("festival:kal", "is not 'espeak:"),
])
def test_unknown_voices_are_refused_before_speaking(captions: dict[str, Path], tmp_path: Path, voice: str,
                                                     words: str) -> None:
    with pytest.raises(SpeechError, match="voice") as info:
        speak_captions(captions["jsonl"], tmp_path / "out", SpeakConfig(voices=(voice,)))
    assert words in str(info.value)
    assert not (tmp_path / "out").exists()


def test_noise_and_reverb_change_the_audio_deterministically(captions: dict[str, Path], tmp_path: Path) -> None:
    clean = speak_captions(captions["jsonl"], tmp_path / "clean", SpeakConfig(voices=VOICES), limit=2)
    config = SpeakConfig(voices=VOICES, noise_snr_range=(5.0, 10.0), reverb=True)
    noisy = speak_captions(captions["jsonl"], tmp_path / "noisy", config, limit=2)
    speak_captions(captions["jsonl"], tmp_path / "again", config, limit=2)
    assert [e.speaker for e in clean.entries] == [e.speaker for e in noisy.entries]
    assert set(_hashes(tmp_path / "noisy").values()).isdisjoint(_hashes(tmp_path / "clean").values())
    assert _hashes(tmp_path / "noisy") == _hashes(tmp_path / "again")
    for entry in noisy.entries:
        data, rate = sf.read(str(entry.audio))
        assert rate == 16000 and data.ndim == 1 and 0.85 < abs(data).max() < 0.95
        # reverb adds a tail: longer than the clean file of the same caption
        assert data.size > sf.info(str(clean.entries[noisy.entries.index(entry)].audio)).frames


def test_cli_speaks_and_reports(captions: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(["speak", str(captions["jsonl"]), str(out), "--voices", *VOICES, "--seed", "3", "--limit", "5",
                 "--jobs", "2", "--quiet", "--split-voices", "test=flite:rms"])
    assert code == 0
    captured = capsys.readouterr()
    assert "4 spoken, 0 reused, 1 skipped" in captured.out
    assert "line 4: no words in the text" in captured.err
    entries = read_manifest(out / "manifest.jsonl")
    assert len(entries) == 4 and [e.speaker for e in entries if e.split == "test"] == ["flite:rms"]
    assert main(["speak", str(captions["jsonl"]), str(out), "--voices", "espeak:en-zz", "--quiet"]) == 2
    assert "no language 'en-zz'" in capsys.readouterr().err
    assert main(["speak", str(captions["jsonl"]), str(out), "--split-voices", "test", "--quiet"]) == 2


def test_distinct_speaks_each_sentence_of_an_image_once(tmp_path: Path) -> None:
    image = tmp_path / "images" / "beach00.png"
    image.parent.mkdir()
    image.write_bytes(b"not read by speak")
    other = tmp_path / "images" / "beach01.png"
    other.write_bytes(b"not read by speak")
    items = [{"image": "images/beach00.png", "class": "beach", "split": "train",
              "captions": ["Sand and sea .", "sand and sea", "Waves on the sand.", "Sand and sea .", "."]},
             {"image": "images/beach01.png", "class": "beach", "split": "train", "captions": ["sand and sea"] * 5}]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    assert len(read_captions(path)) == 10
    kept = read_captions(path, distinct=True)
    # case and punctuation do not make a new sentence; each image keeps its own copy; "." is kept (then skipped)
    assert [(c.image_key, c.index, c.text) for c in kept] == [
        ("images/beach00", 0, "Sand and sea ."), ("images/beach00", 1, "Waves on the sand."),
        ("images/beach00", 2, "."), ("images/beach01", 0, "sand and sea")]
    report = speak_captions(path, tmp_path / "out", SpeakConfig(voices=VOICES), distinct=True)
    assert report.spoken == 3 and [s.line for s in report.skipped] == [5]
    speakers = [e.speaker for e in report.entries[:2]]
    assert speakers[0] != speakers[1]  # renumbered captions of one image still get different voices
