"""Offline field installer (installers/): checksum refusal, uninstall, and a full offline install (slow).

Fast tests use a tiny synthetic bundle (a few small files and their manifest) with the real install.sh.
The slow test builds the real bundle (or reuses one), unpacks it into a fresh folder and installs it into a fresh
prefix with no network for pip, then checks the self-check, an upgrade that keeps user data, and the uninstall::

    .venv/bin/python -m pytest -m slow tests/project/test_installer.py -s

Environment for the slow test: ``DVAN_TEST_BUNDLE`` = an already built bundle (.tar/.tar.gz/.tar.zst or its
unpacked folder) to install instead of building one; ``DVAN_BUNDLE_CACHE`` = the builder's download cache
(default ../bundles/cache beside the checkout, so a second run downloads nothing); ``DVAN_TEST_WORK`` = where the
bundle is built and unpacked (default: pytest's tmp folder; needs ~12 GB).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLERS = ROOT / "installers"


def load_builder() -> ModuleType:
    """installers/build_bundle.py as a module (installers/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_bundle", INSTALLERS / "build_bundle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_bundle"] = module
    spec.loader.exec_module(module)
    return module


def clean_env(home: Path) -> dict[str, str]:
    """An environment with a throw-away HOME and no pip settings of this machine (its local wheel folders)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "XDG_", "DVAN_", "NUMBA_"))}
    env.update({"HOME": str(home), "PIP_CONFIG_FILE": os.devnull, "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1",
                "QT_QPA_PLATFORM": "offscreen"})
    home.mkdir(parents=True, exist_ok=True)
    return env


# ----------------------------------------------------------------------------- a tiny synthetic bundle


def make_tiny_bundle(folder: Path) -> Path:
    """A bundle with the real install.sh, two small payload files and a correct MANIFEST.sha256."""
    builder = load_builder()
    bundle = folder / "dvan-0.0.0-cuda-linux-x86_64-py311"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "resources").mkdir()
    shutil.copy2(INSTALLERS / "install.sh", bundle / "install.sh")
    (bundle / "wheels" / "requirements.lock").write_text("tiny==1.0 --hash=sha256:" + "0" * 64 + "\n")
    (bundle / "wheels" / "tiny-1.0-py3-none-any.whl").write_bytes(b"not really a wheel, but checksummed\n" * 50)
    (bundle / "resources" / "note.txt").write_text("demo data\n")
    (bundle / "bundle.env").write_text(builder.bundle_env({"name": bundle.name, "dvan_version": "0.0.0",
                                                            "variant": "cuda"}))
    builder.write_manifest(bundle, {})
    return bundle


def run_install(bundle: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    return subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(tmp_path / "prefix"),
                           "--bin-dir", str(tmp_path / "bin"), "--applications-dir", str(tmp_path / "apps"), *args],
                          capture_output=True, text=True, env=clean_env(home), timeout=120)


def assert_nothing_installed(tmp_path: Path) -> None:
    for name in ("prefix", "bin", "apps"):
        assert not (tmp_path / name).exists(), f"{name} was created although the bundle was refused"


def test_intact_tiny_bundle_verifies(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    result = run_install(bundle, tmp_path, "--verify-only")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checksums match" in result.stdout
    assert_nothing_installed(tmp_path)


def test_corrupted_file_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    wheel = bundle / "wheels" / "tiny-1.0-py3-none-any.whl"
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0x01  # one flipped bit, same size
    wheel.write_bytes(bytes(data))
    result = run_install(bundle, tmp_path)
    assert result.returncode != 0
    assert "checksum verification FAILED" in result.stderr
    assert "tiny-1.0-py3-none-any.whl: FAILED" in result.stderr
    assert "nothing was installed" in result.stderr
    assert_nothing_installed(tmp_path)


@pytest.mark.parametrize("damage", ["missing", "unlisted", "outside", "symlink"])
def test_incomplete_or_tampered_bundle_is_refused(tmp_path: Path, damage: str) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    if damage == "missing":
        (bundle / "resources" / "note.txt").unlink()
    elif damage == "unlisted":  # a wheel nobody checksummed must never reach pip
        (bundle / "wheels" / "evil-9.9-py3-none-any.whl").write_bytes(b"x")
    elif damage == "outside":
        with (bundle / "MANIFEST.sha256").open("a") as manifest:
            manifest.write(hashlib.sha256(b"").hexdigest() + "  ../../etc/hostname\n")
    else:
        (bundle / "resources" / "link").symlink_to("/etc/hostname")
    result = run_install(bundle, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "nothing was installed" in result.stderr
    assert_nothing_installed(tmp_path)


def test_manifest_covers_every_file_in_sha256sum_format(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "b")
    lines = (bundle / "MANIFEST.sha256").read_text().splitlines()
    listed = {line[66:] for line in lines}
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert listed == files
    check = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "MANIFEST.sha256"], cwd=bundle,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_cpu_variant_without_cpu_wheels_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_builder().main(["--torch", "cpu", "--out", "/nonexistent-never-written"]) == 2
    err = capsys.readouterr().err
    assert "cannot be obtained on this build machine" in err
    assert "--torch-wheels" in err


def test_uninstall_keeps_user_data_unless_purged(tmp_path: Path) -> None:
    prefix, bin_dir, apps, home = tmp_path / "prefix", tmp_path / "bin", tmp_path / "apps", tmp_path / "home"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "versions" / "0.1.0-cuda-1").mkdir(parents=True)
    shutil.copy2(INSTALLERS / "uninstall.sh", prefix / "uninstall.sh")
    (prefix / ".dvan-install").write_text(f"prefix={prefix}\nbin_dir={bin_dir}\napplications_dir={apps}\n")
    bin_dir.mkdir()
    apps.mkdir()
    for name in ("dvan", "dvan-app", "dvan-selfcheck"):
        (prefix / "bin" / name).write_text("#!/bin/sh\n")
        (bin_dir / name).symlink_to(prefix / "bin" / name)
    (bin_dir / "other-tool").write_text("keep me")
    (apps / "dvan.desktop").write_text(f"[Desktop Entry]\nX-Dvan-Prefix={prefix}\n")
    library = home / ".local" / "share" / "dvan" / "libraries" / "site-a" / "library.json"
    settings = home / ".config" / "dvan" / "dvan-app.conf"
    for path in (library, settings):
        path.parent.mkdir(parents=True)
        path.write_text("user data")

    result = subprocess.run(["bash", str(prefix / "uninstall.sh")], capture_output=True, text=True,
                            env=clean_env(home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not prefix.exists()
    assert sorted(p.name for p in bin_dir.iterdir()) == ["other-tool"]
    assert not (apps / "dvan.desktop").exists()
    assert library.read_text() == "user data" and settings.read_text() == "user data"

    # --purge on a second installation deletes this user's data too
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(INSTALLERS / "uninstall.sh", prefix / "uninstall.sh")
    (prefix / ".dvan-install").write_text(f"prefix={prefix}\nbin_dir={bin_dir}\napplications_dir={apps}\n")
    result = subprocess.run(["bash", str(prefix / "uninstall.sh"), "--purge", "--yes"], capture_output=True,
                            text=True, env=clean_env(home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (home / ".local" / "share" / "dvan").exists() and not (home / ".config" / "dvan").exists()


def test_uninstall_refuses_a_folder_that_is_not_an_installation(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "file").write_text("x")
    result = subprocess.run(["bash", str(INSTALLERS / "uninstall.sh"), "--prefix", str(tmp_path / "precious")],
                            capture_output=True, text=True, env=clean_env(tmp_path / "home"))
    assert result.returncode != 0
    assert (tmp_path / "precious" / "file").exists()


# ----------------------------------------------------------------------------- the real thing (slow)


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a bundle archive like a field engineer would (tar -xf) and return its folder."""
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zst"):
        subprocess.run(f"zstd -dc '{archive}' | tar -C '{dest}' -xf -", shell=True, check=True)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="tar")
    (folder,) = [p for p in dest.iterdir() if p.is_dir()]
    return folder


def network_cut() -> list[str]:
    """``unshare -n`` (a new network namespace with no interfaces) when this machine allows it, else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


def target_python() -> str:
    """Debian's own Python 3.11 (what a workstation has) when present, else this one."""
    for candidate in ("/usr/bin/python3.11", sys.executable):
        ok = subprocess.run([candidate, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))"],
                            capture_output=True)
        if Path(candidate).exists() and ok.returncode == 0:
            return candidate
    pytest.skip("no Python 3.11 with venv/ensurepip to create the target venv")


@pytest.mark.slow
def test_offline_install_upgrade_uninstall(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = Path(os.environ.get("DVAN_TEST_WORK") or tmp_path_factory.mktemp("installer"))
    given = os.environ.get("DVAN_TEST_BUNDLE")
    timings: dict[str, float] = {}
    if given and Path(given).is_dir():
        source = Path(given)
        bundle = work / "unpacked" / source.name
        if bundle.exists():
            shutil.rmtree(bundle)
        shutil.copytree(source, bundle, copy_function=os.link)  # hard links: a fresh folder, no 6 GB copy
    else:
        if given:
            archive = Path(given)
        else:
            cache = os.environ.get("DVAN_BUNDLE_CACHE") or str(ROOT.parent / "bundles" / "cache")
            start = time.perf_counter()
            assert load_builder().main(["--out", str(work / "out"), "--cache", cache]) == 0
            timings["build_s"] = time.perf_counter() - start
            archive = next(p for p in (work / "out").glob("dvan-*.tar*") if not p.name.endswith(".sha256"))
        timings["archive_bytes"] = archive.stat().st_size
        start = time.perf_counter()
        bundle = unpack(archive, work / "unpacked")
        timings["unpack_s"] = time.perf_counter() - start

    target = work / "target"
    if target.exists():
        shutil.rmtree(target)
    prefix, bin_dir, apps, home = target / "prefix", target / "bin", target / "apps", target / "home"
    env = clean_env(home)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    cut = network_cut()
    install = [*cut, "bash", str(bundle / "install.sh"), "--prefix", str(prefix), "--bin-dir", str(bin_dir),
               "--applications-dir", str(apps), "--python", target_python(), "--no-system-packages"]

    start = time.perf_counter()
    first = subprocess.run(install, capture_output=True, text=True, env=env, timeout=3600)
    timings["install_s"] = time.perf_counter() - start
    output = first.stdout + first.stderr
    print(output)
    assert first.returncode == 0, output[-6000:]
    assert re.search(r"all \d+ checksums match", output), "install.sh did not verify the bundle's checksums"
    assert "\nPASS\n" in first.stdout and "self-check PASS" in first.stdout
    print("network during the install:", "none (unshare -n)" if cut else "present, but pip had --no-index and no config")

    # the command on PATH, the launcher and its icon
    help_text = subprocess.run([str(bin_dir / "dvan"), "--help"], capture_output=True, text=True, env=env)
    assert help_text.returncode == 0 and "info" in help_text.stdout
    desktop = (apps / "dvan.desktop").read_text()
    fields = dict(line.split("=", 1) for line in desktop.splitlines() if "=" in line)
    assert Path(fields["Exec"].split()[0]).is_file() and os.access(fields["Exec"].split()[0], os.X_OK)
    assert Path(fields["Icon"]).is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(apps / "dvan.desktop")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    resources = subprocess.run([str(bin_dir / "dvan"), "info", "--json"], capture_output=True, text=True, env=env)
    assert json.loads(resources.stdout)["default_model"]["path"].startswith(str(prefix))

    # an upgrade (here: the same bundle again) keeps the user's libraries, settings and models
    user_files = [home / ".local" / "share" / "dvan" / "libraries" / "field" / "tiles.txt",
                  home / ".local" / "share" / "dvan" / "dvan-app" / "models" / "finetuned.safetensors",
                  home / ".config" / "dvan" / "dvan-app.conf"]
    for path in user_files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"user data {path.name}")
    old_version = os.readlink(prefix / "current")
    start = time.perf_counter()
    second = subprocess.run([*install, "--no-self-check"], capture_output=True, text=True, env=env, timeout=3600)
    timings["reinstall_s"] = time.perf_counter() - start
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    assert os.readlink(prefix / "current") != old_version
    assert [p.name for p in (prefix / "versions").iterdir()] == [Path(os.readlink(prefix / "current")).name]
    assert all(path.read_text() == f"user data {path.name}" for path in user_files)
    recheck = subprocess.run([str(bin_dir / "dvan-selfcheck")], capture_output=True, text=True, env=env, timeout=1800)
    assert recheck.returncode == 0 and "PASS" in recheck.stdout, recheck.stdout + recheck.stderr

    # uninstall: software gone, user data kept
    gone = subprocess.run(["bash", str(prefix / "uninstall.sh")], capture_output=True, text=True, env=env)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not prefix.exists() and not (bin_dir / "dvan").exists() and not (apps / "dvan.desktop").exists()
    assert all(path.is_file() for path in user_files)
    print("installer timings:", json.dumps(timings))
