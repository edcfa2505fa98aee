"""Build an offline installation bundle of dvan for field workstations (run on a connected Debian 12 machine).

The bundle is one archive holding everything a workstation with no network needs::

    dvan-<version>-<variant>-linux-x86_64-py311/
      install.sh  uninstall.sh  selfcheck.py  README.md
      bundle.json  bundle.env            what was built, for which torch variant, from which project tree
      wheels/*.whl                       every Python wheel, pinned: wheels/requirements.lock (with hashes)
      debs/*.deb                         the Debian packages of setup.sh plus their dependencies outside a base
                                         Debian 12 install (debs/packages.txt lists them)
      resources/                         default model, demo library source, icons (the project's resources/)
      MANIFEST.sha256                    SHA-256 of every other file (sha256sum -c format)

Usage (from the repository root)::

    python installers/build_bundle.py --out /work/bundles                 # torch 2.14.1 CUDA build (default)
    python installers/build_bundle.py --torch cpu --torch-wheels DIR ...  # CPU-only torch (see README)

Downloads go through ``pip download`` and ``apt-get --download-only`` into a cache folder (``--cache``, default
``<out>/cache``), so a second build only fetches what changed. Exit code 0 on success, 2 on a clear error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent

#: Files of installers/ that travel inside the bundle, at its top level.
SHIPPED = ("install.sh", "uninstall.sh", "selfcheck.py", "README.md")

#: Debian packages the installer needs besides setup.sh's list: the interpreter the venv is made from, and two
#: libraries Qt's window-system plugins need that a base Debian 12 lacks (found by check_in_chroot.sh):
#: libxcb-shape0 for X11 (libqxcb.so) and libwayland-cursor0 for Wayland sessions (libqwayland.so).
EXTRA_DEBS = ("python3", "python3-venv", "libxcb-shape0", "libwayland-cursor0")

#: torch / torchvision pins of the project (checked against pyproject at build time).
TORCH_PINS = {"torch": "2.14.1", "torchvision": "0.29.1"}

#: What was tried for a CPU-only torch on this kind of machine (printed when --torch cpu cannot be built).
CPU_VARIANT_FINDINGS = """\
A CPU-only torch that works with a torchvision cannot be obtained on this build machine:
  * PyPI's torch wheels for Linux x86_64 are CUDA builds: 2.14.1 and 2.13.0 need cuda-toolkit 13.0.3 and
    nvidia-*-cu13 wheels, 2.9.1 needs nvidia-*-cu12 (CUDA 12.8) wheels. Without those wheels torch 2.14.1
    does not import ("libcudnn.so.9: cannot open shared object file").
  * CPU builds (torch-X+cpu) are published only on download.pytorch.org, which this machine cannot reach.
  * The on-disk torch 2.13.0+cpu works alone, but every torchvision wheel for it on PyPI (0.28.x) links
    libtorch_cuda.so and libcudart.so.13 (readelf -d torchvision/_C.so), so torchvision fails to load beside it,
    and PyPI has no torchvision source distribution to build one from (only 0.1.6).
  * torch 2.9.1 + torchvision 0.24.1 are CPU builds only for aarch64 (723 MB there); on x86_64 they are CUDA 12.8
    builds (about 7 GB installed).
To build a CPU bundle, fetch torch-2.14.1+cpu and torchvision-0.29.1+cpu for cp311 linux x86_64 from
https://download.pytorch.org/whl/cpu on a machine that can reach it, put both wheels in a folder and pass
--torch cpu --torch-wheels FOLDER."""


class BundleError(Exception):
    """A bundle cannot be built; the message says why and what to do."""


@dataclass
class Locked:
    """One resolved Python distribution of the bundle."""

    name: str
    version: str
    filename: str
    sha256: str
    url: str = ""


@dataclass
class BuildReport:
    """What a build produced (printed at the end and stored in bundle.json)."""

    archive: Path
    staging: Path
    variant: str
    wheels: list[Locked] = field(default_factory=list)
    debs: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def log(message: str) -> None:
    """Progress line on stderr."""
    print(f"build_bundle: {message}", file=sys.stderr, flush=True)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command, raising BundleError with its output when it fails."""
    log("$ " + " ".join(cmd))
    result = subprocess.run(list(cmd), env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        detail = ((result.stdout or "") + (result.stderr or "")).strip()[-4000:]
        raise BundleError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{detail}")
    return result


def project_metadata(project: Path) -> tuple[str, list[str]]:
    """(version, dependencies) from pyproject.toml."""
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    return str(data["project"]["version"]), list(data["project"]["dependencies"])


def setup_sh_debs(project: Path) -> list[str]:
    """The Debian package list of setup.sh (``DEB_PACKAGES=(...)``), so the bundle follows it."""
    text = (project / "setup.sh").read_text()
    match = re.search(r"DEB_PACKAGES=\(([^)]*)\)", text, re.S)
    if not match:
        raise BundleError("setup.sh has no DEB_PACKAGES=(...) list; cannot tell which Debian packages to bundle")
    return match.group(1).split()


def copy_project_tree(project: Path, dest: Path) -> None:
    """Copy the project's source files (tracked and untracked-but-not-ignored) to build a wheel outside the tree."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=project, check=True,
                                capture_output=True).stdout.decode().split("\0")
        files = [f for f in listed if f and (project / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        files = [str(p.relative_to(project)) for p in project.rglob("*")
                 if p.is_file() and not (set(p.relative_to(project).parts) & skip)
                 and not p.name.endswith(".egg-info")]
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, target)


def clean_pip_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for pip on the build machine: its own config stays (local mirrors, constraints)."""
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra or {})
    return env


def build_project_wheel(python: str, project: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of the project, built from a copy so the checkout gets no build/ or egg-info."""
    with tempfile.TemporaryDirectory(prefix="dvan-src-") as tmp:
        src = Path(tmp) / "src"
        copy_project_tree(project, src)
        run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(src)], env=clean_pip_env())
    wheels = sorted(out_dir.glob("dvan-*.whl"))
    if len(wheels) != 1:
        raise BundleError(f"expected one dvan wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def resolve(python: str, project_wheel: Path, constraints: Path | None, find_links: Path | None,
            work: Path) -> list[Locked]:
    """Resolve every distribution the project wheel needs with ``pip install --dry-run --report``."""
    report = work / "resolve-report.json"
    cmd = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary", ":all:", "-q",
           "--report", str(report), str(project_wheel)]
    if constraints:
        cmd += ["-c", str(constraints)]
    if find_links:
        cmd += ["--find-links", str(find_links)]
    run(cmd, env=clean_pip_env())
    data = json.loads(report.read_text())
    locked = []
    for item in data["install"]:
        meta, info = item["metadata"], item["download_info"]
        if meta["name"].lower() == "dvan":
            continue
        url = info["url"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        if not filename.endswith(".whl"):
            raise BundleError(f"{meta['name']} {meta['version']} resolved to a non-wheel ({filename}); the target "
                              "would have to build it. Add a wheel for it to the index or pin another version.")
        locked.append(Locked(meta["name"], meta["version"], filename, hashes.get("sha256", ""), url))
    return sorted(locked, key=lambda x: x.name.lower())


def download_wheels(python: str, locked: list[Locked], cache: Path, find_links: Path | None, work: Path) -> None:
    """``pip download`` each locked wheel into the cache (already present files with the right hash are kept)."""
    missing = []
    for item in locked:
        path = cache / item.filename
        if path.is_file() and item.sha256 and sha256_file(path) == item.sha256:
            continue
        missing.append(item)
    if not missing:
        log(f"all {len(locked)} wheels already in the cache {cache}")
        return
    requirements = work / "download.txt"
    requirements.write_text("".join(f"{m.name}=={m.version} --hash=sha256:{m.sha256}\n" for m in missing))
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
           "-d", str(cache), "-r", str(requirements)]
    if find_links:
        cmd += ["--find-links", str(find_links)]
    log(f"downloading {len(missing)} wheels ({', '.join(m.name for m in missing[:8])}{'...' if len(missing) > 8 else ''})")
    run(cmd, env=clean_pip_env())
    for item in missing:
        path = cache / item.filename
        if not path.is_file():
            raise BundleError(f"pip download did not leave {item.filename} in {cache}")
        actual = sha256_file(path)
        if item.sha256 and actual != item.sha256:
            raise BundleError(f"{item.filename}: sha256 {actual} differs from the resolved {item.sha256}")
        item.sha256 = actual


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link when possible (same file system, saves gigabytes), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def check_cpu_wheels(folder: Path | None) -> Path:
    """The folder of CPU torch/torchvision wheels, or a BundleError explaining why a CPU bundle cannot be built."""
    if folder is None:
        raise BundleError("--torch cpu: no CPU-only torch is available here.\n" + CPU_VARIANT_FINDINGS)
    names = [p.name for p in folder.glob("*.whl")]
    for name, version in TORCH_PINS.items():
        pattern = re.compile(rf"^{name}-{re.escape(version)}\+cpu-cp311-cp311-[^-]*linux[^-]*x86_64\.whl$")
        if not any(pattern.match(n) for n in names):
            raise BundleError(f"--torch-wheels {folder}: no {name}-{version}+cpu-cp311-cp311-*linux*_x86_64.whl "
                              f"there (found: {', '.join(names) or 'nothing'}).\n" + CPU_VARIANT_FINDINGS)
    return folder


# ---------------------------------------------------------------- Debian packages


def _apt_options(status: Path, archives: Path | None = None) -> list[str]:
    options = ["-o", f"Dir::State::status={status}", "-o", "Debug::NoLocking=1",
               "-o", "APT::Install-Recommends=false", "-o", "APT::Install-Suggests=false",
               "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    if archives is not None:
        options += ["-o", f"Dir::Cache::archives={archives}"]
    return options


def _simulated_installs(packages: Iterable[str], status: Path) -> list[tuple[str, str]]:
    """(package, version) apt would install on a system whose dpkg status file is ``status``."""
    result = run(["apt-get", "install", "-s", "-y", *_apt_options(status), *packages], capture=True,
                 env={**os.environ, "LC_ALL": "C"})
    installs = []
    for line in result.stdout.splitlines():
        match = re.match(r"^Inst (\S+) (?:\[\S+\] )?\((\S+)", line)
        if match:
            installs.append((match.group(1), match.group(2)))
    return installs


def _records(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """apt's candidate record (control fields) of each package."""
    names = list(names)
    if not names:
        return {}
    text = run(["apt-cache", "show", "--no-all-versions", *names], capture=True).stdout
    records = {}
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            records[fields["Package"]] = fields
    return records


def base_system(work: Path, priorities: Sequence[str]) -> tuple[Path, dict[str, dict[str, str]]]:
    """A dpkg status file describing a base Debian install (packages of the given priorities and their
    dependencies) and those packages' records.

    ``important`` (required + important + dependencies) is what debootstrap installs by default and what the Debian
    installer leaves without any task selected; ``required`` is the smaller minbase (containers).
    """
    dump = run(["apt-cache", "dumpavail"], capture=True).stdout
    wanted = set()
    for stanza in dump.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if fields.get("Priority") in priorities and "Package" in fields:
            wanted.add(fields["Package"])
    if not wanted:
        raise BundleError("apt-cache knows no packages; run apt-get update on the build machine first")
    empty = work / "empty-status"
    empty.write_text("")
    closure = [name for name, _ in _simulated_installs(sorted(wanted), empty)]
    records = run(["apt-cache", "show", "--no-all-versions", *closure], capture=True).stdout
    stanzas = [s.strip() for s in records.split("\n\n") if s.strip()]
    status = work / "base-status"
    status.write_text("".join(s + "\nStatus: install ok installed\n\n" for s in stanzas))
    log(f"base Debian system ({'+'.join(priorities)} and dependencies): {len(stanzas)} packages")
    return status, _records(closure)


_VERSIONED = re.compile(r"^\s*([a-z0-9][a-z0-9.+-]*)(?::[a-z0-9]+)?\s*\((?:>=|>>|=)\s*[^)]+\)")


def base_upgrades(bundled: Iterable[str], base: dict[str, dict[str, str]]) -> list[str]:
    """Base-system packages the bundled ones (transitively) need at a minimum version, with their same-source
    siblings (versions locked together, e.g. gcc-12-base with libgcc-s1 and libstdc++6).

    A workstation installed from an older Debian 12 point release and never updated may have older ones; they go
    into the bundle too, and apt on the target upgrades them only when a dependency asks for it.
    """
    by_source: dict[str, list[str]] = {}
    for name, fields in base.items():
        by_source.setdefault(fields.get("Source", name).split()[0], []).append(name)
    added: set[str] = set()
    frontier = list(bundled)
    while frontier:
        records = _records(frontier)
        frontier = []
        for fields in records.values():
            for relation in ("Pre-Depends", "Depends"):
                for clause in fields.get(relation, "").split(","):
                    for alternative in clause.split("|"):
                        match = _VERSIONED.match(alternative)
                        if not match or match.group(1) not in base or match.group(1) in added:
                            continue
                        source = base[match.group(1)].get("Source", match.group(1)).split()[0]
                        for sibling in [match.group(1), *by_source.get(source, [])]:
                            if sibling not in added:
                                added.add(sibling)
                                frontier.append(sibling)
    return sorted(added)


def _find_deb(cache: Path, name: str, version: str) -> Path:
    epochless = version.split(":", 1)[-1]
    for path in cache.glob(f"{name}_*.deb"):
        if urllib.parse.unquote(path.name.split("_")[1]).split(":", 1)[-1] == epochless:
            return path
    raise BundleError(f"apt did not download {name} {version} into {cache}")


def download_debs(packages: Sequence[str], cache: Path, work: Path, base: str) -> tuple[list[Path], list[Path]]:
    """Download ``packages`` with every dependency a base Debian 12 system lacks, and the base packages they need
    at a minimum version, into ``cache``. Returns (needed files, possible base upgrades)."""
    if not shutil.which("apt-get"):
        raise BundleError("apt-get not found: build on Debian 12, or pass --no-debs (the targets then need the "
                          "Debian packages of setup.sh installed already)")
    priorities = ("required",) if base == "required" else ("required", "important")
    status, base_records = base_system(work, priorities)
    needed = _simulated_installs(packages, status)
    (cache / "partial").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "install", "--download-only", "-y", "-q", *_apt_options(status, cache), *packages],
        env=env, capture=True)
    files = [_find_deb(cache, name, version) for name, version in needed]
    upgrades = base_upgrades([name for name, _ in needed], base_records)
    missing = [n for n in upgrades if not _matching(cache, n, base_records[n]["Version"])]
    if missing:
        run(["apt-get", "download", "-q", *(f"{n}={base_records[n]['Version']}" for n in missing)], cwd=cache,
            env=env, capture=True)
    upgrade_files = [_find_deb(cache, n, base_records[n]["Version"]) for n in upgrades]
    log(f"Debian packages: {len(files)} ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB) beyond a base system "
        f"for {' '.join(packages)}; {len(upgrade_files)} base packages they need at a minimum version "
        f"({sum(f.stat().st_size for f in upgrade_files) / 1e6:.0f} MB, installed only where older)")
    return files, upgrade_files


def _matching(cache: Path, name: str, version: str) -> bool:
    try:
        _find_deb(cache, name, version)
    except BundleError:
        return False
    return True


def write_apt_repository(folder: Path, debs: Sequence[Path]) -> None:
    """Make ``folder`` a flat apt repository (Packages, Release) so apt on the target resolves from it alone."""
    stanzas = []
    for deb in sorted(debs):
        control = run(["dpkg-deb", "-f", str(deb)], capture=True).stdout.strip()
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {sha256_file(deb)}\n")
    packages = folder / "Packages"
    packages.write_text("\n".join(stanzas))
    digest = sha256_file(packages)
    date = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S UTC")
    (folder / "Release").write_text(f"Origin: dvan-bundle\nLabel: dvan-bundle\nSuite: dvan\nCodename: dvan\n"
                                     f"Date: {date}\nArchitectures: amd64 all\nSHA256:\n"
                                     f" {digest} {packages.stat().st_size} Packages\n")


# ---------------------------------------------------------------- bundle assembly


def write_manifest(staging: Path, known: dict[str, str]) -> Path:
    """MANIFEST.sha256 over every file of the staging folder (hashes already computed are reused)."""
    lines = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(staging).as_posix()
        if rel == "MANIFEST.sha256":
            continue
        if path.is_symlink():
            raise BundleError(f"{rel} is a symbolic link; the bundle holds plain files only")
        if any(c in rel for c in "\n\\") or rel.startswith("-"):
            raise BundleError(f"file name not allowed in a bundle: {rel!r}")
        lines.append(f"{known.get(rel) or sha256_file(path)}  {rel}\n")
    manifest = staging / "MANIFEST.sha256"
    manifest.write_text("".join(lines))
    return manifest


def make_archive(staging: Path, archive: Path, compress: str) -> None:
    """One tar of the staging folder (uncompressed by default: wheels and debs are compressed already)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".partial")
    if compress == "zst":
        if not shutil.which("zstd"):
            raise BundleError("--compress zst needs the zstd command (apt-get install zstd)")
        with tmp.open("wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(staging.parent), "-cf", "-", staging.name], stdout=subprocess.PIPE)
            zstd = subprocess.run(["zstd", "-q", "-T0", "-6", "-c"], stdin=tar.stdout, stdout=out)
            if tar.wait() != 0 or zstd.returncode != 0:
                raise BundleError("tar | zstd failed")
    else:
        mode = "w:gz" if compress == "gz" else "w"
        with tarfile.open(tmp, mode) as tar:  # type: ignore[call-overload]
            tar.add(staging, arcname=staging.name)
    tmp.replace(archive)


def bundle_env(info: dict[str, object]) -> str:
    """bundle.json's scalar fields as KEY='value' lines, for install.sh (no jq on a base system)."""
    lines = []
    for key, value in info.items():
        if isinstance(value, (str, int, float)):
            text = str(value).replace("'", "")
            lines.append(f"BUNDLE_{key.upper()}='{text}'\n")
    return "".join(lines)


def min_nvidia_driver() -> str:
    """The minimum NVIDIA driver of the CUDA build, as selfcheck.py (shipped in the bundle) checks it on the target."""
    spec = importlib.util.spec_from_file_location("dvan_bundle_selfcheck", HERE / "selfcheck.py")
    assert spec is not None and spec.loader is not None
    selfcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(selfcheck)
    major, minor, patch = selfcheck.MIN_DRIVER
    return f"{major}.{minor}.{patch:02d}"


@dataclass
class _Plan:
    """What one build makes and where: the inputs checked, the names derived from them."""

    python: str
    project: Path
    version: str
    find_links: Path | None
    cache: Path
    staging: Path
    archive: Path


def _plan(args: argparse.Namespace) -> _Plan:
    """Check the build machine, the interpreter and the project's pins; name the staging folder and archive."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise BundleError(f"bundles are built for Linux x86_64 on Linux x86_64 (this is {platform.system()} "
                          f"{platform.machine()})")
    python = args.python or sys.executable
    pyver = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture=True).stdout.strip()
    if pyver != "3.11":
        raise BundleError(f"{python} is Python {pyver}; the workstations run Debian 12's Python 3.11: pass --python")
    project = Path(args.project).resolve()
    version, dependencies = project_metadata(project)
    for name, pin in TORCH_PINS.items():
        if f"{name}=={pin}" not in dependencies:
            raise BundleError(f"pyproject.toml no longer pins {name}=={pin}; update TORCH_PINS in {__file__}")
    find_links = None
    if args.torch == "cpu":
        find_links = check_cpu_wheels(Path(args.torch_wheels).resolve() if args.torch_wheels else None)
    out = Path(args.out).resolve()
    name = f"dvan-{version}-{args.torch}-linux-x86_64-py311"
    return _Plan(python=python, project=project, version=version, find_links=find_links,
                 cache=Path(args.cache).resolve() if args.cache else out / "cache", staging=out / name,
                 archive=out / (name + {"none": ".tar", "gz": ".tar.gz", "zst": ".tar.zst"}[args.compress]))


def _stage_wheels(plan: _Plan, variant: str, work: Path, known_hashes: dict[str, str]) -> list[Locked]:
    """Build the project wheel, resolve and download the pinned wheels into the staging folder, write the lock."""
    log(f"building the dvan {plan.version} wheel from {plan.project}")
    project_wheel = build_project_wheel(plan.python, plan.project, work / "project")
    constraints = None
    if variant == "cpu":
        constraints = work / "cpu-constraints.txt"
        constraints.write_text("".join(f"{n}=={v}+cpu\n" for n, v in TORCH_PINS.items()))
    log("resolving the pinned dependencies")
    locked = resolve(plan.python, project_wheel, constraints, plan.find_links, work)
    if variant == "cpu":
        gpu = [w.name for w in locked if w.name.startswith(("nvidia-", "cuda-", "triton"))]
        if gpu:
            raise BundleError(f"the CPU variant still resolved GPU packages: {', '.join(gpu)}")
    wheel_cache = plan.cache / "wheels"
    wheel_cache.mkdir(parents=True, exist_ok=True)
    download_wheels(plan.python, locked, wheel_cache, plan.find_links, work)
    for item in locked:
        link_or_copy(wheel_cache / item.filename, plan.staging / "wheels" / item.filename)
        known_hashes[f"wheels/{item.filename}"] = item.sha256
    shutil.copy2(project_wheel, plan.staging / "wheels" / project_wheel.name)
    project_hash = sha256_file(project_wheel)
    known_hashes[f"wheels/{project_wheel.name}"] = project_hash
    lock_lines = [f"dvan=={plan.version} --hash=sha256:{project_hash}\n"]
    lock_lines += [f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in locked]
    (plan.staging / "wheels" / "requirements.lock").write_text("".join(lock_lines))
    return locked


def _stage_debs(plan: _Plan, deb_base: str, work: Path) -> list[Path]:
    """Download the Debian packages a base system lacks into a local apt repository in the staging folder."""
    deb_cache = plan.cache / "debs"
    deb_cache.mkdir(parents=True, exist_ok=True)
    packages = list(dict.fromkeys(setup_sh_debs(plan.project) + list(EXTRA_DEBS)))
    needed, upgrades = download_debs(packages, deb_cache, work, deb_base)
    debs = needed + upgrades
    folder = plan.staging / "debs"
    folder.mkdir()
    for deb in debs:
        link_or_copy(deb, folder / deb.name)
    write_apt_repository(folder, [folder / d.name for d in debs])
    (folder / "TOP_LEVEL").write_text("".join(p + "\n" for p in packages))
    (folder / "packages.txt").write_text(
        "# asked for (setup.sh and the installer's " + " ".join(EXTRA_DEBS) + "):\n# " + " ".join(packages) + "\n"
        + "# beyond a base Debian 12 system:\n" + "".join(d.name + "\n" for d in needed)
        + "# base packages needed at a minimum version (apt upgrades them only where older):\n"
        + "".join(d.name + "\n" for d in upgrades))
    return debs


def _stage_resources(plan: _Plan, warnings: list[str]) -> None:
    """Copy resources/ (default model, demo data, icons) and the installer scripts into the staging folder."""
    resources = plan.project / "resources"
    if resources.is_dir() and any(resources.iterdir()):
        shutil.copytree(resources, plan.staging / "resources", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        (plan.staging / "resources").mkdir()
    for required, what in (("models/default.safetensors", "default model"), ("demo", "demo library data"),
                           ("icons/dvan.svg", "application icon")):
        if not (plan.staging / "resources" / required).exists():
            warnings.append(f"resources/{required} ({what}) is not in the project yet, so not in the bundle")
    for shipped in SHIPPED:
        shutil.copy2(HERE / shipped, plan.staging / shipped)
    (plan.staging / "install.sh").chmod(0o755)
    (plan.staging / "uninstall.sh").chmod(0o755)


def _write_bundle_info(plan: _Plan, report: BuildReport, deb_base: str) -> None:
    """bundle.json (what the bundle holds) and bundle.env (the same for install.sh)."""
    locked = report.wheels
    torch_item = next((w for w in locked if w.name == "torch"), None)
    cuda = next((w.version for w in locked if w.name == "cuda-toolkit"), "")
    info: dict[str, object] = {
        "name": plan.staging.name, "dvan_version": plan.version, "variant": report.variant,
        "torch": torch_item.filename if torch_item else "", "cuda_toolkit": cuda,
        "min_nvidia_driver": min_nvidia_driver() if cuda.startswith("13.") else ("" if not cuda else "see README"),
        "python": "3.11", "platform": "linux-x86_64", "debian": "12",
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "deb_base": deb_base, "wheel_count": len(locked) + 1, "deb_count": len(report.debs),
        "wheels": [{"name": w.name, "version": w.version, "file": w.filename, "sha256": w.sha256} for w in locked],
        "debs": report.debs, "warnings": report.warnings,
    }
    (plan.staging / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    (plan.staging / "bundle.env").write_text(bundle_env(info))


def build(args: argparse.Namespace) -> BuildReport:
    """Build the bundle described by the parsed arguments: plan, wheels, debs, resources, metadata, archive."""
    plan = _plan(args)
    if plan.staging.exists():
        shutil.rmtree(plan.staging)
    (plan.staging / "wheels").mkdir(parents=True)
    report = BuildReport(archive=plan.archive, staging=plan.staging, variant=args.torch)
    known_hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="dvan-bundle-") as tmp:
        report.wheels = _stage_wheels(plan, args.torch, Path(tmp), known_hashes)
        if args.no_debs:
            report.warnings.append("--no-debs: no Debian packages in the bundle; targets need them installed already")
        else:
            report.debs = [d.name for d in _stage_debs(plan, args.deb_base, Path(tmp))]
    _stage_resources(plan, report.warnings)
    _write_bundle_info(plan, report, "none" if args.no_debs else args.deb_base)
    write_manifest(plan.staging, known_hashes)
    for part in ("wheels", "debs", "resources"):
        folder = plan.staging / part
        report.sizes[part] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
    log(f"writing {plan.archive}")
    make_archive(plan.staging, plan.archive, args.compress)
    report.sizes["archive"] = plan.archive.stat().st_size
    (plan.archive.with_name(plan.archive.name + ".sha256")).write_text(f"{sha256_file(plan.archive)}  {plan.archive.name}\n")
    if not args.keep_staging:
        shutil.rmtree(plan.staging)
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="build_bundle.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: torch 2.14.1 CUDA 13.0 build (default, ~5.5 GB of wheels); cpu: CPU-only torch")
    parser.add_argument("--torch-wheels", metavar="DIR",
                        help="folder holding torch-2.14.1+cpu and torchvision-0.29.1+cpu wheels (--torch cpu)")
    parser.add_argument("--out", default=str(PROJECT.parent / "bundles"), help="output folder (default ../bundles)")
    parser.add_argument("--cache", default=os.environ.get("DVAN_BUNDLE_CACHE"),
                        help="download cache kept between builds (default $DVAN_BUNDLE_CACHE or OUT/cache)")
    parser.add_argument("--project", default=str(PROJECT), help="project checkout to bundle (default this one)")
    parser.add_argument("--python", help="Python 3.11 used to resolve and build wheels (default this one)")
    parser.add_argument("--compress", choices=("none", "gz", "zst"), default="none",
                        help="archive compression (default none: the payload is compressed already)")
    parser.add_argument("--no-debs", action="store_true", help="leave the Debian packages out")
    parser.add_argument("--deb-base", choices=("important", "required"), default="important",
                        help="what the target is assumed to have: a standard base install (important, default) or "
                             "a minimal one (required, e.g. a container); packages beyond it are bundled")
    parser.add_argument("--keep-staging", action="store_true", help="keep the unpacked bundle folder next to the archive")
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Build a bundle; prints the archive path and sizes. Returns 0, or 2 with a message on a clear error."""
    args = parse_args(argv)
    try:
        report = build(args)
    except BundleError as exc:
        print(f"build_bundle: error: {exc}", file=sys.stderr)
        return 2
    mb = {k: v / 1e6 for k, v in report.sizes.items()}
    print(f"bundle: {report.archive} ({mb['archive']:.0f} MB)")
    print(f"  wheels {mb['wheels']:.0f} MB ({len(report.wheels) + 1} files), debs {mb['debs']:.0f} MB "
          f"({len(report.debs)} files), resources {mb['resources']:.1f} MB")
    print(f"  sha256: {report.archive.name}.sha256")
    if not args.keep_staging:
        print(f"  unpack on the target: tar -xf {report.archive.name}; then sudo ./{report.staging.name}/install.sh")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
