"""The layer order of the dvan packages: no module imports from a layer above its own.

Every import is read from the source with :mod:`ast`, including the ones inside functions and
under ``TYPE_CHECKING``, so a cycle hidden by a local import fails here as an upward import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "dvan"

#: Lowest first. A module may import from its own layer and the layers below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("", "errors", "config", "progress", "device", "fsutil", "resources", "packages"),  # "" is dvan/__init__.py
    ("audio",),
    ("query",),  # the query's models (recogniser, sentence encoder, text branch); the model factory attaches them
    ("model",),
    ("data",),  # manifests, spoken captions, the feature cache (image features come from the model's backbone)
    ("eval",),
    ("train",),  # training reports validation through eval
    ("library",),
    ("search",),
    ("cluster",),  # the same import and search spread over Ray workers or local processes
    ("cli", "__main__"),
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def dvan_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``dvan`` import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; dvan imports absolutely")
            found.append((node.lineno, node.module or ""))
    return [(line, name) for line, name in found if name == "dvan" or name.startswith("dvan.")]


def package_of(module: str) -> str:
    """The layer key of a dotted dvan module name: its first part below ``dvan``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path = ROOT.parent) -> str:
    """The dotted name of a module file under ``root`` (the folder holding ``dvan``)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(ROOT.rglob("*.py"))


def upward_imports(path: Path, root: Path = ROOT.parent) -> list[str]:
    """Each import of ``path`` that reaches above its layer, as "file:line: a (layer) imports b (layer)"."""
    own = package_of(module_name(path, root))
    problems = []
    for line, name in dvan_imports(path):
        target = package_of(name)
        if LAYER_OF[target] > LAYER_OF[own]:
            problems.append(f"{path.relative_to(root)}:{line}: dvan.{own or '(root)'} (layer {LAYER_OF[own]}) "
                            f"imports {name} (layer {LAYER_OF[target]})")
    return problems


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module_name(path)) for path in MODULES}
    assert packages - LAYER_OF.keys() == set(), "give the new package a place in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_goes_up_a_layer(path: Path) -> None:
    assert upward_imports(path) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check sees a function-level import as well as a top-level one."""
    model = tmp_path / "dvan" / "model"
    model.mkdir(parents=True)
    module = model / "scorer.py"
    module.write_text("import numpy\n\n\ndef score():\n    from dvan.search.kernels import fast_logits\n"
                      "    return fast_logits\n", encoding="utf-8")
    assert upward_imports(module, tmp_path) == [
        "dvan/model/scorer.py:5: dvan.model (layer 3) imports dvan.search.kernels (layer 8)"]
    module.write_text("from dvan.audio.features import file_features\n", encoding="utf-8")
    assert upward_imports(module, tmp_path) == []
