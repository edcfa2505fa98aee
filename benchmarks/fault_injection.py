"""Fault injection: replay a matrix of bad inputs and faults against the real ``dvan`` CLI.

    .venv/bin/python benchmarks/fault_injection.py [--only SUBSTRING ...] [--keep]

Every case runs ``python -m dvan.cli.main ...`` in a subprocess on data generated in a temporary
folder (the tiny espeak-ng collection and the raster fixtures of ``tests/data``, a library
imported from them, checkpoints edited from the embedded default model), and records: the exit
code, the first line of stderr (progress bars left out), whether a traceback was printed,
whether the files that must survive are byte-identical afterwards ("data intact"), and the
child's peak memory. A case passes when all of its expectations hold (the expected exit code,
the words the message must contain, no traceback, data intact, and any extra check such as "zero
HTTP requests arrived" or "peak memory below 1.5 GB").

Groups: ``model`` (checkpoint configs and weights), ``training`` (OUT_DIR, epochs, kill -9 then
rerun, disk full on a private tmpfs), ``input`` (manifests, audio, CLI values), ``library``
(damaged arrays, NaN rows, VRTs reaching the network or other files, a huge VRT, a symlink loop,
read-only libraries, bad library/search values, kill -9 during an import then rerun). The
expected behaviour is the one issue 13 asks for. Cases that need a private mount (disk full,
read-only library) use ``unshare -Urm`` and are reported as skipped where the kernel refuses.

Writes benchmarks/results/fault_injection.md and .json (cases tried / passed, one row per case).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))

RESULTS = ROOT / "benchmarks" / "results"
#: Files whose changes never count as damage: SQLite's shared-memory index and the writer lock.
VOLATILE = ("-wal", "-shm", ".lock")


@dataclass
class Case:
    """One fault and what the CLI must do about it."""

    name: str
    group: str
    expected: str
    argv: list[str] | None = None
    rc: tuple[int, ...] = (2,)
    said: tuple[str, ...] = ()
    protect: tuple[Path, ...] = ()
    prepare: Callable[[], None] | None = None
    check: Callable[[dict[str, Any]], str | None] | None = None
    shell: str | None = None
    timeout: float = 180.0
    memory_limit_gb: float | None = None
    run: Callable[[Case], dict[str, Any]] | None = None
    outcome: dict[str, Any] = field(default_factory=dict)


def _digest(paths: tuple[Path, ...]) -> dict[str, str]:
    """SHA-256 of every file under the protected paths (volatile SQLite side files left out)."""
    digests: dict[str, str] = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for path in files:
            if path.name.endswith(VOLATILE):
                continue
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DVAN_CACHE": str(work / "cache"),
            "PYTHONWARNINGS": "default"}


def run_process(command: list[str], env: dict[str, str], timeout: float, memory_limit_gb: float | None = None,
                stop_when: Callable[[str], bool] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run a command; return rc, stdout, stderr, peak RSS (MB), seconds, and whether it was killed.

    ``stop_when(stderr_so_far)`` turning true kills the process with SIGKILL (the kill -9 cases).
    """
    def limits() -> None:
        os.setsid()
        if memory_limit_gb is not None:
            size = int(memory_limit_gb * 1024 ** 3)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                   preexec_fn=limits, cwd=cwd)
        killed = timed_out = False
        rusage = None
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > timeout:
                os.killpg(process.pid, signal.SIGKILL)
                timed_out = True
            elif stop_when is not None and not killed:
                err.seek(0)
                if stop_when(err.read().decode("utf-8", "replace")):
                    os.killpg(process.pid, signal.SIGKILL)
                    killed = True
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    return {"rc": process.returncode, "stdout": stdout, "stderr": stderr, "killed": killed, "timed_out": timed_out,
            "peak_mb": round(rusage.ru_maxrss / 1024, 1) if rusage else None,
            "seconds": round(time.monotonic() - started, 2)}


def dvan(work: Path, *argv: str, **kwargs: Any) -> dict[str, Any]:
    """``python -m dvan.cli.main ARGV`` in a subprocess."""
    return run_process([sys.executable, "-m", "dvan.cli.main", *argv], _env(work), kwargs.pop("timeout", 300), **kwargs)


def first_line(stderr: str) -> str:
    """The first line of stderr that is not a progress bar or a blank."""
    for raw in stderr.replace("\r", "\n").splitlines():
        line = raw.strip()
        if line and not re.search(r"\d+%\||it/s|tile/s|caption/s|\?it", line):
            return line[:300]
    return ""


def evaluate_case(case: Case, result: dict[str, Any], before: dict[str, str], after: dict[str, str]) -> None:
    """Fill ``case.outcome`` from a finished run."""
    stderr = result.get("stderr", "")
    traceback = "Traceback (most recent call last)" in stderr or "Traceback (most recent call last)" in \
        result.get("stdout", "")
    intact = before == after
    problems = []
    if result.get("skipped"):
        case.outcome = {"rc": None, "first_line": result["skipped"], "traceback": False, "intact": True,
                        "pass": None, "why": "skipped", "peak_mb": None, "seconds": 0}
        return
    if result["rc"] not in case.rc:
        problems.append(f"exit {result['rc']}, expected {'/'.join(map(str, case.rc))}")
    text = (stderr + result.get("stdout", "")).lower()
    for word in case.said:
        if word.lower() not in text:
            problems.append(f"'{word}' not said")
    if traceback:
        problems.append("traceback")
    if not intact:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problems.append(f"data changed: {', '.join(Path(c).name for c in changed[:3])}")
    if result.get("timed_out"):
        problems.append("timed out")
    if case.check is not None:
        extra = case.check(result)
        if extra:
            problems.append(extra)
    case.outcome = {"rc": result["rc"], "first_line": first_line(stderr), "traceback": traceback, "intact": intact,
                    "pass": not problems, "why": "; ".join(problems), "peak_mb": result.get("peak_mb"),
                    "seconds": result.get("seconds"), "note": result.get("note")}


def run_case(case: Case, work: Path) -> None:
    """Prepare, run and judge one case."""
    try:
        if case.prepare is not None:
            case.prepare()
        before = _digest(case.protect)
        if case.run is not None:
            result = case.run(case)
        elif case.shell is not None:
            result = _shell_rc(case, work)
        else:
            assert case.argv is not None
            result = dvan(work, *case.argv, timeout=case.timeout, memory_limit_gb=case.memory_limit_gb)
        after = _digest(case.protect)
    except Exception as exc:  # a broken harness step is a failed case, not a crashed benchmark
        result, before, after = {"rc": None, "stderr": f"harness: {type(exc).__name__}: {exc}"}, {}, {}
    evaluate_case(case, result, before, after)


# ------------------------------------------------------------------------------------------ fixtures


def edited_checkpoint(target: Path, edit: dict[str, Any] | None = None, nan: bool = False,
                      truncate: bool = False) -> Path:
    """The embedded default model with config fields replaced, a NaN weight, or cut in half."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from dvan.resources import default_model_path

    source = default_model_path()
    if truncate:
        data = source.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return target
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(source))
    config = json.loads(metadata["dvan_config"])
    for key, value in (edit or {}).items():
        holder = config["audio"] if key.startswith("audio.") else config
        holder[key.removeprefix("audio.")] = value
    metadata["dvan_config"] = json.dumps(config)
    if nan:
        name = next(k for k, v in tensors.items() if v.ndim == 2)
        tensors[name] = tensors[name].clone()
        tensors[name][0, 0] = float("nan")
    save_file(tensors, str(target), metadata=metadata)
    return target


class CountingServer:
    """A localhost HTTP server counting every request (the VRT network cases)."""

    def __init__(self, payload: bytes) -> None:
        counter = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                counter.requests.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(payload)

            do_GET = do_HEAD = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _no_leftovers(folder: Path) -> str | None:
    from dvan.fsutil import is_leftover

    found = sorted(p.name for p in folder.iterdir() if is_leftover(p.name)) if folder.is_dir() else []
    return f"leftovers {found}" if found else None


def _sources(work: Path, library: Path) -> list[str]:
    done = dvan(work, "library", "info", str(library), "--json", timeout=120)
    if done["rc"] != 0:
        return []
    return [Path(s["path"]).name for s in json.loads(done["stdout"]).get("source_files", [])]


def _private_mount(mount: str, command: str, prepare: str = "", after: str = "") -> str:
    """A shell line: mount privately (or print NOMOUNT), run ``command``, print ``rc=N``, then ``after``."""
    return (f"unshare -Urm sh -c '{mount} || {{ echo NOMOUNT; exit 0; }}; {prepare} {command}; echo rc=$?; "
            f"{after}'")


def _shell_rc(case: Case, work: Path) -> dict[str, Any]:
    """Run ``case.shell`` and take the exit code the inner command printed as ``rc=N``."""
    result = run_process(["sh", "-c", case.shell or ""], _env(work), case.timeout)
    if "NOMOUNT" in result["stdout"]:
        return {"skipped": "a private mount (unshare -Urm) is not allowed here"}
    found = re.search(r"rc=(\d+)", result["stdout"])
    result["rc"] = int(found.group(1)) if found else None
    return result


def build_cases(work: Path) -> tuple[list[Case], Callable[[], None]]:
    """Generate the data and every case; returns the cases and a cleanup function."""
    import numpy as np
    import soundfile as sf
    from make_rasters import make_rasters
    from make_tiny_collection import make_tiny_collection

    from dvan.resources import default_model_path

    manifest = make_tiny_collection(work / "collection")
    rasters = make_rasters(work / "rasters")
    query = str(rasters["query"])
    chips = sorted(rasters["many"].glob("chip*.tif"))
    base = work / "base-library"
    created = dvan(work, "library", "create", str(base), "--tile-size", "128")
    added = dvan(work, "library", "add", str(base), *map(str, chips[:3]), "--quiet")
    if created["rc"] or added["rc"]:
        raise SystemExit(f"cannot build the base library: {created['stderr'][-500:]} {added['stderr'][-500:]}")
    server = CountingServer(rasters["png"].read_bytes())
    default = str(default_model_path())
    m = str(manifest)
    cases: list[Case] = []
    odd = work / "odd"
    odd.mkdir()
    a_file = odd / "a-file.txt"
    a_file.write_text("keep me\n")
    a_folder = odd / "a-folder.wav"
    a_folder.mkdir()
    fifo = odd / "pipe.wav"
    os.mkfifo(fifo)

    def library(name: str) -> Path:
        target = work / "libraries" / name
        shutil.copytree(base, target)
        return target

    def gallery(lib: Path) -> Path:
        return next(lib.glob("gallery-*"))

    # ------------------------------------------------------------------ model
    for field_name, value, said in (("audio_dim", -5, "audio_dim"), ("audio_dim", 1e9, "audio_dim"),
                                    ("audio.hop_length", 0, "hop_length"), ("audio.sample_rate", -16000, "sample_rate"),
                                    ("backbone", "resnet-9000", "backbone"), ("dropout", "lots", "dropout"),
                                    ("audio.normalize", "yes", "normalize")):
        path = edited_checkpoint(work / f"ckpt-{field_name}-{value}.safetensors", {field_name: value})
        cases.append(Case(f"checkpoint config {field_name}={value!r}", "model", "exit 2 naming file and field",
                          ["eval", str(path), m, "--quiet"], said=(path.name, said), protect=(path,)))
    huge = edited_checkpoint(work / "ckpt-huge.safetensors", {"fusion_dim": 60000})
    cases.append(Case("7.6 MB checkpoint claiming fusion_dim 60000", "model",
                      "exit 2 from the header shapes, peak memory < 1.5 GB (no model built)",
                      ["eval", str(huge), m, "--quiet"], said=("wrong shape",), protect=(huge,),
                      check=lambda r: None if (r.get("peak_mb") or 0) < 1500 else f"peak {r['peak_mb']} MB"))
    nan = edited_checkpoint(work / "ckpt-nan.safetensors", nan=True)
    cases.append(Case("checkpoint with a NaN weight, marked trained", "model", "exit 2, no ranking of nan",
                      ["search", str(base), "--wav", query, "--model", str(nan)], said=("nan or inf",),
                      protect=(nan, base)))
    cut = edited_checkpoint(work / "ckpt-cut.safetensors", truncate=True)
    cases.append(Case("truncated checkpoint", "model", "exit 2 naming the file", ["eval", str(cut), m, "--quiet"],
                      said=(cut.name,), protect=(cut,)))

    # ------------------------------------------------------------------ training
    train = ["train", m]
    quick = ["--preset", "paper", "--quiet", "--device", "cpu"]
    cases.append(Case("train OUT_DIR is an existing file", "training", "exit 2, the file untouched",
                      [*train, str(a_file), *quick], said=("existing file",), protect=(a_file,)))
    cases.append(Case("train OUT_DIR under a file (unwritable)", "training", "exit 2",
                      [*train, str(a_file / "run"), *quick], said=("cannot write",), protect=(a_file,)))
    for epochs in ("0", "-3"):
        cases.append(Case(f"train --epochs {epochs}", "training", "exit 2, no 'checkpoint written'",
                          [*train, str(work / f"run-epochs{epochs}"), "--epochs", epochs, *quick],
                          said=("epochs must be at least 1",),
                          check=lambda r: "checkpoint reported" if "best checkpoint" in r["stdout"] else None))
    killed_run = work / "run-killed"

    def kill_then_rerun(case: Case) -> dict[str, Any]:
        log = killed_run / "train_log.jsonl"

        def first_epoch_done(_: str) -> bool:
            return log.is_file() and '"event": "epoch"' in log.read_text(errors="replace")

        argv = [*train, str(killed_run), "--epochs", "2", *quick]
        first = dvan(work, *argv, stop_when=first_epoch_done, timeout=600)
        if not first["killed"]:
            return {**first, "rc": None, "stderr": "the run ended before it could be killed\n" + first["stderr"]}
        left = _no_leftovers(killed_run)
        rerun = dvan(work, *argv, timeout=600)
        rerun["note"] = f"after the kill: {left or 'no leftovers'}"
        return rerun

    cases.append(Case("kill -9 during training (after epoch 1), then rerun", "training",
                      "rerun exit 0, resumes, no .tmp*/.partial left", rc=(0,), said=("best checkpoint",),
                      run=kill_then_rerun, check=lambda r: _no_leftovers(killed_run)))
    small = work / "small-disk"
    small.mkdir()
    cases.append(Case("disk full during training (3 MB tmpfs)", "training",
                      "exit 2 saying disk full, earlier file kept, nothing half-written", said=("disk full",),
                      shell=_private_mount(
                          f"mount -t tmpfs -o size=3m tmpfs {small}",
                          f"{sys.executable} -m dvan.cli.main train {m} {small}/run --epochs 1 --preset paper "
                          "--quiet --device cpu",
                          prepare=f"mkdir {small}/run && echo kept > {small}/run/notes.txt &&",
                          after=f"echo leftovers=$(ls -A {small}/run | grep -c -e tmp -e partial); "
                                f"grep -q kept {small}/run/notes.txt || echo LOST"),
                      check=lambda r: "leftovers or lost file" if "leftovers=0" not in r["stdout"] or "LOST" in
                      r["stdout"] else None))
    damaged_resume = work / "run-damaged-resume"
    damaged_resume.mkdir()
    (damaged_resume / "resume.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")
    cases.append(Case("train with a damaged resume file", "training", "exit 2 naming it",
                      [*train, str(damaged_resume), *quick], said=("resume file",), protect=(damaged_resume,)))

    # ------------------------------------------------------------------ inputs
    lines = manifest.read_bytes().splitlines(keepends=True)
    latin1 = manifest.parent / "latin1.jsonl"
    latin1.write_bytes(lines[0] + lines[1].replace(b'"train"', b'"tr\xe9in"') + b"".join(lines[2:]))
    cases.append(Case("manifest with a non-UTF-8 byte", "input", "exit 2 naming file and line",
                      ["train", str(latin1), str(work / "run-latin1"), *quick], said=("line 2", "utf-8"), protect=(latin1,)))
    record = json.loads(lines[0])
    for label, target in (("a folder", a_folder), ("a FIFO", fifo)):
        bad = manifest.parent / f"audio-{label.split()[-1].lower()}.jsonl"
        bad.write_text(json.dumps({**record, "audio": str(target)}) + "\n")
        cases.append(Case(f"manifest audio is {label}", "input", "exit 2 saying what it is, not 'no such file'",
                          ["train", str(bad), str(work / "run-odd"), *quick],
                          said=("is a folder",) if "folder" in label else ("not a regular file",), timeout=120))
    loud = odd / "loud.wav"
    t = np.arange(32000) / 16000
    sf.write(loud, (np.sin(2 * np.pi * 200 * t * (1 + t)) * 1e30).astype(np.float32), 16000, subtype="FLOAT")
    cases.append(Case("float query audio scaled to 1e30", "input", "exit 0, no overflow warning",
                      ["search", str(base), "--wav", str(loud)], rc=(0,), protect=(base,),
                      check=lambda r: "warning leaked" if "warning" in r["stderr"].lower() else None))
    cases.append(Case("query audio is a folder", "input", "exit 2 'is a folder'",
                      ["search", str(base), "--wav", str(a_folder)], said=("is a folder",)))
    cases.append(Case("query audio is a FIFO", "input", "exit 2 'not a regular file', no hang",
                      ["search", str(base), "--wav", str(fifo)], said=("not a regular file",), timeout=120))
    cases.append(Case("--device foo", "input", "exit 2", [*train, str(work / "run-dev"), "--device", "foo"],
                      said=("not a device name",)))
    cases.append(Case("eval --json is a folder", "input", "exit 2 before evaluating",
                      ["eval", default, m, "--json", str(odd), "--quiet"], said=("is a folder",), protect=(odd,)))
    captions = odd / "captions.jsonl"
    captions.write_text(json.dumps({"image": "i.png", "label": "a", "split": "train", "text": "a red roof"}) + "\n")
    cases.append(Case("speak OUT_DIR is an existing file", "input", "exit 2, the file untouched",
                      ["speak", str(captions), str(a_file), "--quiet"], said=("existing file",), protect=(a_file,)))
    cases.append(Case("captions --top 0", "input", "exit 2", ["captions", str(base), "--tile", "1", "--top", "0"],
                      said=("--top",)))
    cases.append(Case("captions --image is a FIFO", "input", "exit 2, no hang",
                      ["captions", str(base), "--image", str(fifo)], said=("not a regular file",), timeout=120))

    # ------------------------------------------------------------------ library (issue 13, other half)
    lib = library("truncated-backbone")
    cases.append(Case("backbone.f16 truncated: library info", "library", "exit 2 naming the file and the repair",
                      ["library", "info", str(lib)], said=("backbone.f16",), protect=(lib,),
                      prepare=lambda lib=lib: os.truncate(lib / "backbone.f16", (lib / "backbone.f16").stat().st_size // 2)))
    lib = library("truncated-backbone-add")
    cases.append(Case("backbone.f16 truncated: library add", "library", "exit 2, never zero-fills",
                      ["library", "add", str(lib), str(chips[3]), "--quiet"], said=("backbone.f16",), protect=(lib,),
                      prepare=lambda lib=lib: os.truncate(lib / "backbone.f16", (lib / "backbone.f16").stat().st_size // 2)))
    lib = library("truncated-gallery")
    cases.append(Case("gallery file truncated: search", "library", "exit 2 naming the gallery file",
                      ["search", str(lib), "--wav", query], said=("gallery",), protect=(lib,),
                      prepare=lambda lib=lib: os.truncate(gallery(lib), 100)))
    lib = library("deleted-gallery")
    cases.append(Case("gallery file deleted: library info", "library", "exit 2 naming the gallery file",
                      ["library", "info", str(lib)], said=("gallery",), protect=(lib,),
                      prepare=lambda lib=lib: gallery(lib).unlink()))

    def nan_rows(lib: Path) -> None:
        path = gallery(lib)
        dtype = np.float16 if path.suffix == ".f16" else np.float32
        data = np.memmap(path, dtype=dtype, mode="r+")
        data[:64] = np.nan
        data.flush()

    lib = library("bad-rows")
    cases.append(Case("gallery rows overwritten with NaN: search", "library", "exit 2, never a ranking of nan",
                      ["search", str(lib), "--wav", query], said=("nan",), protect=(lib,),
                      prepare=lambda lib=lib: nan_rows(lib),
                      check=lambda r: "nan ranking shown" if re.search(r"\bnan\b", r["stdout"]) else None))

    def flip_bytes(lib: Path) -> None:
        with open(lib / "backbone.f16", "r+b") as handle:
            handle.seek(100)
            handle.write(b"\xff" * 64)

    lib = library("corrupt-backbone")
    cases.append(Case("backbone.f16 bytes corrupted: library check", "library",
                      "exit 1 (damage found, like fsck) naming the file and the repair command",
                      ["library", "check", str(lib)], rc=(1,), said=("backbone.f16",), protect=(lib,),
                      prepare=lambda lib=lib: flip_bytes(lib)))

    net = work / "vrt-network"
    net.mkdir()
    shutil.copy(chips[4], net / "good.tif")
    (net / "net.vrt").write_text(
        f'<VRTDataset rasterXSize="64" rasterYSize="64"><VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">/vsicurl/http://127.0.0.1:{server.port}/src.png</SourceFilename>'
        '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    lib = library("vrt-network")
    cases.append(Case("VRT whose source is /vsicurl/http://127.0.0.1", "library",
                      "zero HTTP requests, the VRT reported and skipped, the good file imported",
                      ["library", "add", str(lib), str(net), "--quiet"], rc=(0, 1), said=("net.vrt",),
                      check=lambda r: f"{len(server.requests)} HTTP request(s) arrived" if server.requests else None))
    local = work / "vrt-local"
    local.mkdir()
    shutil.copy(chips[5], local / "good.tif")
    (local / "passwd.vrt").write_text(
        '<VRTDataset rasterXSize="32" rasterYSize="8"><VRTRasterBand dataType="Byte" band="1" '
        'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">/etc/passwd</SourceFilename>'
        '<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>32</LineOffset>'
        '</VRTRasterBand></VRTDataset>')
    lib_local = library("vrt-local")
    cases.append(Case("VRT raw band reading /etc/passwd", "library", "the VRT refused (no tile from it)",
                      ["library", "add", str(lib_local), str(local), "--quiet"], rc=(0, 1), said=("passwd.vrt",),
                      check=lambda r: "imported /etc/passwd bytes" if "passwd.vrt" in _sources(work, lib_local)
                      else None))
    giant = work / "giant.vrt"
    giant.write_text('<VRTDataset rasterXSize="2000000000" rasterYSize="2000000000">'
                     '<VRTRasterBand dataType="Byte" band="1"/></VRTDataset>')
    lib = library("giant")
    cases.append(Case("1 KB VRT declaring 2e9 x 2e9 pixels", "library",
                      "the file refused by name (exit 1: a file of the import failed, the rest is kept), bounded "
                      "memory (4 GB limit), within 2 minutes",
                      ["library", "add", str(lib), str(giant), "--quiet"], rc=(1,), said=("giant.vrt",), timeout=120,
                      memory_limit_gb=4, protect=(lib,)))
    loop = work / "symlink-loop"
    loop.mkdir()
    shutil.copy(chips[5], loop / "good.tif")
    os.symlink("self", loop / "self")
    os.symlink("b", loop / "a")
    os.symlink("a", loop / "b")
    os.symlink(".", loop / "again")  # a folder that contains itself
    lib_loop = library("symlink-loop")
    cases.append(Case("symlink loop inside an added folder", "library", "the good file imported, the loop reported",
                      ["library", "add", str(lib_loop), str(loop), "--quiet"], rc=(0, 1),
                      check=lambda r: None if "good.tif" in _sources(work, lib_loop) else "good file not imported"))
    readonly = library("shared-archive")
    bind = f"mount --bind {readonly} {readonly} && mount -o remount,bind,ro {readonly}"
    cases.append(Case("read-only library: search", "library", "exit 0, ranked results", rc=(0,), protect=(readonly,),
                      shell=_private_mount(bind, f"{sys.executable} -m dvan.cli.main search {readonly} --wav {query}")))
    cases.append(Case("read-only library: add", "library", "exit 2 saying read-only", said=("read-only",),
                      protect=(readonly,), shell=_private_mount(bind, f"{sys.executable} -m dvan.cli.main library add "
                                                                      f"{readonly} {chips[3]} --quiet")))
    cases.append(Case("search --top -5", "library", "exit 2", ["search", str(base), "--wav", query, "--top", "-5"],
                      said=("--top",), protect=(base,)))
    cases.append(Case("search --bbox nan 0 1 1", "library", "exit 2",
                      ["search", str(base), "--wav", query, "--bbox", "nan", "0", "1", "1"], said=("bbox",),
                      protect=(base,)))
    cases.append(Case("library create --tile-size 0", "library", "exit 2",
                      ["library", "create", str(work / "lib-zero"), "--tile-size", "0"], said=("tile",)))
    lib = library("negative")
    cases.append(Case("library add --overlap -10", "library", "exit 2, library untouched",
                      ["library", "add", str(lib), str(chips[3]), "--overlap", "-10", "--quiet"], said=("overlap",),
                      protect=(lib,)))
    lib_kill = library("killed-import")

    def kill_import_then_rerun(case: Case) -> dict[str, Any]:
        def some_tiles(stderr: str) -> bool:
            counts = [int(x) for x in re.findall(r"\b(\d+)/\d+ \[", stderr)]
            return bool(counts) and max(counts) >= 2

        argv = ["library", "add", str(lib_kill), str(rasters["many"]), "--batch-size", "2"]
        first = dvan(work, *argv, stop_when=some_tiles, timeout=300)
        if not first["killed"]:
            return {**first, "rc": None, "stderr": "the import ended before it could be killed\n" + first["stderr"]}
        return dvan(work, *argv, "--quiet", timeout=300)

    cases.append(Case("kill -9 during import, then rerun", "library", "rerun exit 0, every source complete", rc=(0,),
                      run=kill_import_then_rerun,
                      check=lambda r: None if len(_sources(work, lib_kill)) == len(chips) + 1 else
                      f"{len(_sources(work, lib_kill))} sources after the rerun"))
    return cases, server.close


def write_results(cases: list[Case], machine: dict[str, Any], seconds: float) -> tuple[Path, Path]:
    """benchmarks/results/fault_injection.json and .md."""
    tried = [c for c in cases if c.outcome.get("pass") is not None]
    passed = [c for c in tried if c.outcome["pass"]]
    rows = [{"case": c.name, "group": c.group, "expected": c.expected, **c.outcome} for c in cases]
    totals = {"tried": len(tried), "passed": len(passed), "skipped": len(cases) - len(tried),
              "by_group": {g: {"tried": sum(1 for c in tried if c.group == g),
                               "passed": sum(1 for c in passed if c.group == g)}
                           for g in dict.fromkeys(c.group for c in cases)}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / "fault_injection.json", RESULTS / "fault_injection.md"
    json_path.write_text(json.dumps({"machine": machine, "seconds": round(seconds, 1), "totals": totals,
                                     "cases": rows}, indent=1) + "\n", encoding="utf-8")
    lines = ["# Fault injection against the dvan CLI", "",
             f"Made by `benchmarks/fault_injection.py` in {seconds:.0f} s on {machine['cpu']} ({machine['cores']} "
             f"cores, load {', '.join(f'{x:.1f}' for x in machine['load_average'] or [])} at the start).", "",
             f"**Cases tried / passed: {len(tried)} / {len(passed)}**"
             + (f" ({len(cases) - len(tried)} skipped: no private mounts here)" if len(cases) > len(tried) else ""),
             "", "| group | tried | passed |", "| --- | ---: | ---: |"]
    lines += [f"| {g} | {v['tried']} | {v['passed']} |" for g, v in totals["by_group"].items()]
    lines += ["", "| case | expected | exit | first line of stderr | traceback | data intact | peak MB | result |",
              "| --- | --- | ---: | --- | --- | --- | ---: | --- |"]
    for c in cases:
        o = c.outcome
        result = "skipped" if o["pass"] is None else "pass" if o["pass"] else f"FAIL: {o['why']}"
        result += f" ({o['note']})" if o.get("note") else ""
        line = o["first_line"].replace("|", "\\|")
        lines.append(f"| {c.name} | {c.expected} | {o['rc']} | {line} | {'yes' if o['traceback'] else 'no'} | "
                     f"{'yes' if o['intact'] else 'no'} | {o['peak_mb'] or '-'} | {result.replace('|', '/')} |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    """Build the data, run every case (or those matching --only), write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="run only cases whose name contains one of these")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print where it is")
    args = parser.parse_args(argv)
    from benchmarks.machine import describe_machine

    machine = describe_machine()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dvan-faults-"))
    try:
        cases, close = build_cases(work)
        if args.only:
            cases = [c for c in cases if any(s.lower() in c.name.lower() for s in args.only)]
        for case in cases:
            run_case(case, work)
            o = case.outcome
            state = "skip" if o["pass"] is None else "pass" if o["pass"] else "FAIL"
            print(f"{state:4s} [{case.group}] {case.name}: exit {o['rc']}, {o['first_line'][:110]}"
                  + (f"  ({o['why']})" if o["why"] and state == "FAIL" else "")
                  + (f"  [{o['note']}]" if o.get("note") else ""), flush=True)
        close()
        for case in cases:  # the temporary folder's name says nothing; results name it $WORK
            for key in ("first_line", "why", "note"):
                if isinstance(case.outcome.get(key), str):
                    case.outcome[key] = case.outcome[key].replace(str(work), "$WORK")
        json_path, md_path = write_results(cases, machine, time.monotonic() - started)
        tried = [c for c in cases if c.outcome["pass"] is not None]
        print(f"cases tried / passed: {len(tried)} / {sum(1 for c in tried if c.outcome['pass'])}; "
              f"{md_path}, {json_path}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
