#!/usr/bin/env bash
# dvan offline installer. Ships inside a bundle made by installers/build_bundle.py; needs no network at all.
#
#   sudo ./install.sh                 system install: /opt/dvan, command in /usr/local/bin, menu entry for everyone
#   ./install.sh                      user install: ~/.local/opt/dvan, command in ~/.local/bin (Debian packages must
#                                     be installed already, or run once with sudo)
#   ./install.sh --verify-only        check every file of the bundle against MANIFEST.sha256 and stop
#
# Options: --prefix DIR, --bin-dir DIR, --applications-dir DIR, --python PY (a Python 3.11),
#          --no-system-packages (never touch Debian packages), --no-self-check, --keep-previous, -h
#
# Order: 1. every checksum is verified before anything changes (a mismatch stops here, nothing installed);
# 2. Debian packages missing on this system are installed from debs/ (apt-get with every source switched off);
# 3. a new virtual environment gets the wheels from wheels/ (pip --no-index, hashes required);
# 4. the new version is switched in (PREFIX/current), then the command, menu entry and icon;
# 5. self-check: 'dvan info' and one search; prints PASS or what failed.
# An upgrade installs next to the running version and switches only when it is complete; user data (libraries,
# settings, fine-tuned models in ~/.local/share/dvan, ~/.config/dvan, ~/.cache/dvan) is never touched.
set -euo pipefail
umask 022

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
T_START=$(date +%s)
PREFIX=""; BIN_DIR=""; APP_DIR=""; PYTHON=""
SYSTEM_PACKAGES=1; SELF_CHECK=1; KEEP_PREVIOUS=0; VERIFY_ONLY=0

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a folder}"; shift 2 ;;
    --bin-dir=*) BIN_DIR="${1#*=}"; shift ;;
    --applications-dir) APP_DIR="${2:?--applications-dir needs a folder}"; shift 2 ;;
    --applications-dir=*) APP_DIR="${1#*=}"; shift ;;
    --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
    --python=*) PYTHON="${1#*=}"; shift ;;
    --no-system-packages) SYSTEM_PACKAGES=0; shift ;;
    --no-self-check) SELF_CHECK=0; shift ;;
    --keep-previous) KEEP_PREVIOUS=1; shift ;;
    --verify-only) VERIFY_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# Relative folders are taken from where the installer was started (verification changes directory).
absolute() { case "$1" in ""|/*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
PREFIX="$(absolute "$PREFIX")"; BIN_DIR="$(absolute "$BIN_DIR")"; APP_DIR="$(absolute "$APP_DIR")"

# ------------------------------------------------------------------ 1. verify the whole bundle first
verify_bundle() {
  cd "$BUNDLE"
  [ -f MANIFEST.sha256 ] || die "MANIFEST.sha256 is missing from $BUNDLE: not a complete bundle; nothing was installed"
  command -v sha256sum >/dev/null || die "sha256sum not found (coreutils); nothing was installed"
  # Paths in the manifest must stay inside the bundle.
  if cut -c67- MANIFEST.sha256 | grep -qE '^/|(^|/)\.\.(/|$)'; then
    die "MANIFEST.sha256 names a path outside the bundle; refusing it; nothing was installed"
  fi
  if [ ! -s MANIFEST.sha256 ] || grep -qvE '^[0-9a-f]{64}  [^ ]' MANIFEST.sha256; then
    die "MANIFEST.sha256 is malformed; nothing was installed"
  fi
  local links
  links="$(find . -type l -print | head -5)"
  [ -z "$links" ] || die "the bundle holds symbolic links ($links); refusing it; nothing was installed"
  # Every file must be listed: an unlisted wheel in wheels/ could otherwise be installed unchecked.
  local extra
  extra="$(comm -23 <(find . -type f ! -path ./MANIFEST.sha256 -printf '%P\n' | LC_ALL=C sort) \
                    <(cut -c67- MANIFEST.sha256 | LC_ALL=C sort))"
  [ -z "$extra" ] || die "files in the bundle that MANIFEST.sha256 does not list (remove them or rebuild the bundle):
$extra
nothing was installed"
  local count failed
  count="$(wc -l < MANIFEST.sha256)"
  say "verifying $count files against MANIFEST.sha256 ..."
  local rc=0
  failed="$(LC_ALL=C sha256sum --check --strict --quiet MANIFEST.sha256 2>&1)" || rc=$?
  if [ "$rc" != 0 ]; then
    printf '%s\n' "$failed" | head -20 >&2
    die "checksum verification FAILED (the bundle is damaged or was altered: copy it again); nothing was installed"
  fi
  say "all $count checksums match ($(( $(date +%s) - T_START )) s)"
}
verify_bundle
[ "$VERIFY_ONLY" = 1 ] && exit 0

# ------------------------------------------------------------------ bundle facts and defaults
declare -A BUNDLE_INFO=()
while IFS= read -r line; do
  [[ "$line" =~ ^(BUNDLE_[A-Z0-9_]+)=\'([^\']*)\'$ ]] && BUNDLE_INFO["${BASH_REMATCH[1]}"]="${BASH_REMATCH[2]}"
done < "$BUNDLE/bundle.env"
BUNDLE_NAME="${BUNDLE_INFO[BUNDLE_NAME]:-dvan}"
DVAN_VERSION="${BUNDLE_INFO[BUNDLE_DVAN_VERSION]:?bundle.env has no DVAN_VERSION}"
VARIANT="${BUNDLE_INFO[BUNDLE_VARIANT]:-cuda}"

[ "$(uname -m)" = x86_64 ] || die "this bundle is for x86_64 Linux; this machine is $(uname -m)"
if [ -r /etc/debian_version ]; then
  case "$(cat /etc/debian_version)" in 12*|bookworm*) ;; *) say "warning: built for Debian 12; this is Debian $(cat /etc/debian_version)" ;; esac
else
  say "warning: not a Debian system; the Debian packages in debs/ cannot be used here"
fi

IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1
if [ "$IS_ROOT" = 1 ]; then
  PREFIX="${PREFIX:-/opt/dvan}"; BIN_DIR="${BIN_DIR:-/usr/local/bin}"; APP_DIR="${APP_DIR:-/usr/local/share/applications}"
else
  PREFIX="${PREFIX:-$HOME/.local/opt/dvan}"; BIN_DIR="${BIN_DIR:-$HOME/.local/bin}"
  APP_DIR="${APP_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/applications}"
fi
mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd -P)"
if [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX")" ] && [ ! -f "$PREFIX/.dvan-install" ]; then
  die "$PREFIX exists, is not empty and is not a dvan installation; choose another --prefix"
fi
say "installing $BUNDLE_NAME into $PREFIX (command in $BIN_DIR, menu entry in $APP_DIR)"

# ------------------------------------------------------------------ 2. Debian packages
install_debs() {
  [ -d "$BUNDLE/debs" ] || { say "no Debian packages in this bundle (built with --no-debs)"; return 0; }
  command -v dpkg-query >/dev/null || { say "warning: no dpkg here; skipping the Debian packages"; return 0; }
  local wanted=() missing=() pkg
  mapfile -t wanted < <(grep -v '^#' "$BUNDLE/debs/TOP_LEVEL" | grep .)
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then say "Debian packages: all ${#wanted[@]} needed are installed already"; return 0; fi
  if [ "$SYSTEM_PACKAGES" = 0 ]; then
    say "warning: Debian packages missing here and --no-system-packages given: ${missing[*]}"
    return 0
  fi
  if [ "$IS_ROOT" != 1 ]; then
    die "Debian packages missing: ${missing[*]}. Run this installer once with sudo (it installs them from debs/), or pass --no-system-packages to go on without them. Nothing was installed."
  fi
  say "installing Debian packages from debs/: ${missing[*]} (and what they need)"
  # debs/ is a flat apt repository; apt sees it and nothing else, so it cannot reach for the network, and it
  # upgrades a base package from debs/ only where a dependency needs a newer one.
  APT_TMP="$(mktemp -d /tmp/dvan-apt.XXXXXX)"
  mkdir -p "$APT_TMP/lists/partial" "$APT_TMP/archives/partial"
  printf 'deb [trusted=yes] file:%s ./\n' "$BUNDLE/debs" > "$APT_TMP/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$APT_TMP/sources.list" -o Dir::Etc::SourceParts=/dev/null
                  -o "Dir::State::Lists=$APT_TMP/lists" -o "Dir::Cache::archives=$APT_TMP/archives"
                  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Get::List-Cleanup=0
                  -o Acquire::Languages=none -o APT::Sandbox::User=root)
  if ! apt-get "${apt_opts[@]}" update -q >"$APT_TMP/update.log" 2>&1; then
    cat "$APT_TMP/update.log" >&2; rm -rf "$APT_TMP"
    die "apt could not read the bundle's package list (debs/Packages); nothing was installed"
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"; then
    rm -rf "$APT_TMP"
    die "apt-get could not install the bundled Debian packages (see above); the Python part was not installed"
  fi
  rm -rf "$APT_TMP"
}
install_debs

# ------------------------------------------------------------------ 3. Python environment
find_python() {
  local candidate
  for candidate in ${PYTHON:+"$PYTHON"} python3.11 /usr/bin/python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}
PY="$(find_python)" || die "no Python 3.11 with venv found (Debian: packages python3 and python3-venv, in debs/); use --python"
say "Python: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"

STAMP="$(date -u +%Y%m%d%H%M%S)"
VERSION_DIR="$PREFIX/versions/$DVAN_VERSION-$VARIANT-$STAMP"
mkdir -p "$PREFIX/versions"
touch "$PREFIX/.dvan-install"
cleanup_partial() { [ -n "${VERSION_DIR:-}" ] && [ -d "$VERSION_DIR" ] && [ ! -f "$VERSION_DIR/.complete" ] && rm -rf "$VERSION_DIR"; }
trap cleanup_partial EXIT

say "creating the virtual environment $VERSION_DIR/venv"
"$PY" -m venv "$VERSION_DIR/venv"
say "installing $(grep -c . "$BUNDLE/wheels/requirements.lock") wheels from the bundle (pip --no-index; takes minutes)"
T0=$(date +%s)
# pip must see the bundle and nothing else: no config files, no PIP_* settings from this shell, no index.
env $(compgen -e | grep '^PIP_' | sed 's/^/-u /') PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$VERSION_DIR/venv/bin/python" -m pip install --no-index --find-links "$BUNDLE/wheels" --only-binary :all: \
  --require-hashes --no-cache-dir -q -r "$BUNDLE/wheels/requirements.lock" \
  || die "pip could not install the wheels (see above); the previous installation, if any, is unchanged"
say "wheels installed in $(( $(date +%s) - T0 )) s"

cp -r "$BUNDLE/resources" "$VERSION_DIR/resources"
cp "$BUNDLE/selfcheck.py" "$BUNDLE/bundle.json" "$BUNDLE/MANIFEST.sha256" "$VERSION_DIR/"
touch "$VERSION_DIR/.complete"

# ------------------------------------------------------------------ 4. switch, command, menu entry
PREVIOUS="$(readlink "$PREFIX/current" 2>/dev/null || true)"
ln -sfn "versions/${VERSION_DIR##*/}" "$PREFIX/current.new"
mv -T "$PREFIX/current.new" "$PREFIX/current"
say "switched $PREFIX/current to ${VERSION_DIR##*/}"

mkdir -p "$PREFIX/bin"
write_wrapper() {  # name, entry point inside the venv
  cat > "$PREFIX/bin/$1.new" <<EOF
#!/bin/sh
# dvan launcher written by install.sh: runs the current version with its resources and a writable numba cache.
APP_HOME='$PREFIX/current'
export DVAN_RESOURCES="\${DVAN_RESOURCES:-\$APP_HOME/resources}"
export NUMBA_CACHE_DIR="\${NUMBA_CACHE_DIR:-\${XDG_CACHE_HOME:-\${HOME:-/tmp}/.cache}/dvan/numba}"
exec $2 "\$@"
EOF
  chmod 755 "$PREFIX/bin/$1.new"; mv -f "$PREFIX/bin/$1.new" "$PREFIX/bin/$1"
}
write_wrapper dvan '"$APP_HOME/venv/bin/dvan"'
write_wrapper dvan-app '"$APP_HOME/venv/bin/dvan-app"'
write_wrapper dvan-selfcheck '"$APP_HOME/venv/bin/python" "$APP_HOME/selfcheck.py"'
cp "$BUNDLE/uninstall.sh" "$PREFIX/uninstall.sh"; chmod 755 "$PREFIX/uninstall.sh"

mkdir -p "$BIN_DIR"
for name in dvan dvan-app dvan-selfcheck; do
  if [ -e "$BIN_DIR/$name" ] && [ ! -L "$BIN_DIR/$name" ]; then
    say "warning: $BIN_DIR/$name exists and is not a link; left alone (run $PREFIX/bin/$name)"
  else
    ln -sfn "$PREFIX/bin/$name" "$BIN_DIR/$name"
  fi
done
case ":$PATH:" in *":$BIN_DIR:"*) ;; *) say "note: $BIN_DIR is not on PATH; add it, or run $PREFIX/bin/dvan" ;; esac

ICON="$PREFIX/current/resources/icons/dvan.svg"
[ -f "$ICON" ] || ICON="$PREFIX/current/resources/icons/dvan.png"
mkdir -p "$APP_DIR"
cat > "$APP_DIR/dvan.desktop" <<EOF
[Desktop Entry]
Type=Application
Version=1.0
Name=dvan
GenericName=Voice-query imagery workstation
Comment=Search an imagery library by voice, offline
Exec=$PREFIX/bin/dvan-app
Icon=$ICON
Terminal=false
Categories=Science;Geography;Education;
Keywords=imagery;remote sensing;voice;search;
X-Dvan-Prefix=$PREFIX
EOF
chmod 644 "$APP_DIR/dvan.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$APP_DIR" 2>/dev/null || true
printf 'prefix=%s\nbin_dir=%s\napplications_dir=%s\nversion=%s\nbundle=%s\ninstalled_utc=%s\n' \
  "$PREFIX" "$BIN_DIR" "$APP_DIR" "$DVAN_VERSION" "$BUNDLE_NAME" "$STAMP" > "$PREFIX/.dvan-install"

# Older versions go once the new one is in place (one is kept with --keep-previous, for a quick roll-back).
for old in "$PREFIX"/versions/*; do
  [ "$old" = "$VERSION_DIR" ] && continue
  if [ "$KEEP_PREVIOUS" = 1 ] && [ "versions/${old##*/}" = "$PREVIOUS" ]; then continue; fi
  rm -rf "$old"
done
trap - EXIT
say "installed dvan $DVAN_VERSION ($VARIANT) in $(( $(date +%s) - T_START )) s (checks, packages, wheels, launchers)"

# ------------------------------------------------------------------ 5. self-check
if [ "$SELF_CHECK" = 1 ]; then
  say "self-check: dvan info"
  "$PREFIX/bin/dvan" info || say "warning: 'dvan info' exited with $?"
  say "self-check: one search"
  if "$PREFIX/bin/dvan-selfcheck"; then
    say "self-check PASS"
  else
    say "self-check FAILED (see above). The software is installed; rerun the check with: $PREFIX/bin/dvan-selfcheck"
    exit 3
  fi
fi
