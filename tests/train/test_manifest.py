"""The collection manifest: strict validation that names the line, and a lossless write/read round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvan.data.manifest import ManifestEntry, read_manifest, write_manifest
from dvan.errors import ManifestError


@pytest.fixture()
def collection(tmp_path: Path) -> Path:
    """A folder with two images and three audio files (contents do not matter to the manifest)."""
    for name in ("images/a.jpg", "images/b.jpg", "audio/a_0.wav", "audio/a_1.wav", "audio/b_0.wav"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def _line(**fields: object) -> str:
    record: dict[str, object] = {"image": "images/a.jpg", "audio": "audio/a_0.wav", "label": "airport",
                                 "split": "train"}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def _write(folder: Path, *lines: str) -> Path:
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_manifest_reads_with_absolute_paths_and_line_numbers(collection: Path) -> None:
    path = _write(collection, _line(text="planes", speaker="espeak:en-us+m3"), "",
                  _line(image="images/b.jpg", audio="audio/b_0.wav", label="beach", split="test"))
    first, second = read_manifest(path)
    assert first.image == (collection / "images/a.jpg").resolve() and first.audio.is_absolute()
    assert (first.text, first.speaker, first.line) == ("planes", "espeak:en-us+m3", 1)
    assert (second.label, second.split, second.text, second.line) == ("beach", "test", None, 3)


@pytest.mark.parametrize(("bad", "words"), [
    (_line(audio="audio/missing.wav"), "line 2: audio file"),
    (_line(image="images/missing.jpg"), "line 2: image file"),
    (_line(split="holdout"), "line 2: unknown split 'holdout'"),
    (_line(label=...), "line 2: missing label"),
    (_line(label=""), "line 2: missing label"),
    ('{"image": "images/a.jpg", "audio": ', "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object, got list"),
    (_line(colour="red"), "line 2: unknown field(s) ['colour']"),
    (_line(text=5), "line 2: field 'text' must be a string"),
    (_line(audio="audio/a_1.wav", label="beach"), "line 2: image images/a.jpg labelled 'beach' here but 'airport'"),
])
def test_invalid_lines_are_named(collection: Path, bad: str, words: str) -> None:
    path = _write(collection, _line(), bad)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_missing_files_pass_when_not_checked(collection: Path) -> None:
    path = _write(collection, _line(audio="audio/not_yet.wav"))
    [entry] = read_manifest(path, check_files=False)
    assert entry.audio.name == "not_yet.wav"


def test_missing_and_empty_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="no entries"):
        read_manifest(_write(tmp_path, "", "  "))


def test_round_trip_keeps_every_field_and_writes_relative_paths(collection: Path, tmp_path: Path) -> None:
    entries = [
        ManifestEntry(image=collection / "images/a.jpg", audio=collection / "audio/a_0.wav", label="airport",
                      split="train", text="many planes, \"quoted\" and ünïcode", speaker="flite:slt"),
        ManifestEntry(image=collection / "images/a.jpg", audio=collection / "audio/a_1.wav", label="airport",
                      split="val"),
        ManifestEntry(image=collection / "images/b.jpg", audio=collection / "audio/b_0.wav", label="beach",
                      split="test", text="sand"),
    ]
    path = write_manifest(collection / "sub" / "manifest.jsonl", entries)
    assert not list(path.parent.glob("*.partial"))
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["image"] == "../images/a.jpg" and first["audio"] == "../audio/a_0.wav"
    back = read_manifest(path)
    strip = [(e.image.resolve(), e.audio.resolve(), e.label, e.split, e.text, e.speaker) for e in entries]
    assert [(e.image, e.audio, e.label, e.split, e.text, e.speaker) for e in back] == strip
    assert [e.line for e in back] == [1, 2, 3]
    # rewriting over an existing manifest replaces it whole
    write_manifest(path, entries[:1])
    assert len(read_manifest(path)) == 1
