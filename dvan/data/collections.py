"""Several manifests read as one collection, with one rule for what "the same class" means across them.

Training on UC Merced and on AID at once needs a decision: a UCM ``beach`` and an AID ``Beach``
are the same kind of place, and the training loss counts a caption and an image of the same class
as matching. :class:`LabelPolicy` states the rule:

* ``merge`` (the default): a class is its name without case, spaces or punctuation, so
  ``StorageTanks`` and ``storagetanks`` are one class, plus explicit ``aliases`` for synonyms
  (``{"harbor": "port"}``). Classes that match nothing stay apart.
* ``separate``: every manifest's classes are its own (``ucm_spoken:beach`` differs from
  ``rsicd_spoken:beach``); a caption then only matches images of its own collection's class.

One manifest is read as it is, whatever the policy: its labels are not renamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from dvan.data.manifest import ManifestEntry, read_manifest
from dvan.errors import ManifestError

LabelMode = Literal["merge", "separate"]
LABEL_MODES: tuple[LabelMode, ...] = ("merge", "separate")


def normalise_label(label: str) -> str:
    """A class name without case, spaces or punctuation: ``"Storage Tanks"`` -> ``"storagetanks"``."""
    return re.sub(r"[\W_]+", "", label.casefold())


@dataclass(frozen=True)
class LabelPolicy:
    """How class labels of several manifests are joined (see the module docstring)."""

    # "merge": same normalised name (or joined by an alias) = same class; "separate": per manifest.
    mode: LabelMode = "merge"
    # Normalised class name -> normalised name of the class it joins (merge mode only),
    # e.g. {"harbor": "port", "baseballdiamond": "baseballfield"}.
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise ManifestError(f"label mode {self.mode!r} is unknown; use one of {', '.join(LABEL_MODES)}")
        clean = {normalise_label(k): normalise_label(v) for k, v in self.aliases.items()}
        if any(not k or not v for k, v in clean.items()):
            raise ManifestError(f"label aliases {dict(self.aliases)} hold an empty class name")
        object.__setattr__(self, "aliases", clean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in checkpoints and reports)."""
        return {"mode": self.mode, "aliases": dict(sorted(self.aliases.items()))}

    @classmethod
    def from_file(cls, mode: LabelMode, aliases_path: str | Path | None) -> LabelPolicy:
        """A policy whose aliases come from a JSON object file ``{"alias": "class", ...}``.

        Raises:
            ManifestError: the file is missing or not a JSON object of strings.
        """
        if aliases_path is None:
            return cls(mode)
        path = Path(aliases_path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read label aliases ({exc}); give a JSON object like "
                                '{"harbor": "port"}') from exc
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ManifestError(f'{path}: label aliases must be a JSON object of strings, like {{"harbor": "port"}}')
        return cls(mode, data)


def collection_names(paths: Sequence[Path]) -> list[str]:
    """A short distinct name per manifest: its folder's name, with the file stem added where folders clash."""
    names = [p.resolve().parent.name or p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{n}/{p.stem}" for n, p in zip(names, paths, strict=True)]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


def read_collections(paths: str | Path | Sequence[str | Path], policy: LabelPolicy | None = None,
                     check_files: bool = True) -> list[ManifestEntry]:
    """Read one or several manifests as one list of entries, labels joined by ``policy``.

    Args:
        paths: one manifest or several.
        policy: how labels of several manifests are joined (default: merge by normalised name).
        check_files: whether every image and audio file must exist.

    Raises:
        ManifestError: a manifest is invalid, or one image is listed by two manifests with classes
            the policy does not join.
    """
    manifests = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not manifests:
        raise ManifestError("no manifest given; pass at least one collection manifest (JSON Lines)")
    if len(manifests) == 1:
        return read_manifest(manifests[0], check_files=check_files)
    policy = policy or LabelPolicy()
    entries: list[ManifestEntry] = []
    image_labels: dict[Path, tuple[str, Path]] = {}
    for name, manifest in zip(collection_names(manifests), manifests, strict=True):
        for entry in read_manifest(manifest, check_files=check_files):
            if policy.mode == "separate":
                label = f"{name}:{entry.label}"
            else:
                label = normalise_label(entry.label)
                label = policy.aliases.get(label, label)
            known = image_labels.setdefault(entry.image, (label, manifest))
            if known[0] != label:
                raise ManifestError(f"{manifest}, line {entry.line}: image {entry.image} is class {label!r} here but "
                                    f"{known[0]!r} in {known[1]}; give it one class or join them with an alias")
            entries.append(replace(entry, label=label))
    return entries


def manifest_record(manifest: str | Path | Sequence[str | Path]) -> str | list[str]:
    """The manifest(s) of a run as recorded in logs and checkpoints: one path, or a list of several."""
    if isinstance(manifest, str | Path):
        return str(Path(manifest).resolve())
    paths = [str(Path(m).resolve()) for m in manifest]
    return paths[0] if len(paths) == 1 else paths
