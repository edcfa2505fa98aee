#!/usr/bin/env bash
# One-command setup on Debian 12: Debian packages, .venv, the project; then runs the main job.
#
#   bash setup.sh            set up, then run the main job: a spoken search of the embedded demo library with the
#                            default model, printed here, then the viewer opened on it (terminal only without a display)
#   bash setup.sh --no-run   set up only (CI uses this before running the tests)
#
# Safe to re-run: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

RUN_MAIN=1
for arg in "$@"; do
  case "$arg" in
    --no-run) RUN_MAIN=0 ;;
    *) echo "setup.sh: unknown option $arg (use --no-run)" >&2; exit 2 ;;
  esac
done

# Debian packages: PortAudio for sounddevice, libpulse for QtMultimedia, xcb bits for Qt under X,
# libsndfile for soundfile, espeak-ng/flite/sox for 'dvan speak', PulseAudio for the virtual-microphone
# test, Xvfb for screenshots.
DEB_PACKAGES=(libportaudio2 libpulse0 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-shape0 libwayland-cursor0 libxkbcommon-x11-0 libegl1 libgl1
  libsndfile1 espeak-ng flite sox pulseaudio pulseaudio-utils libasound2-plugins xvfb python3-venv)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: Python 3.11 not found; install it (Debian 12: apt-get install python3) or set PYTHON=" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
echo "setup: installing the project and its pinned dependencies into .venv (torch is large: first run takes minutes)"
# (grep drops pip's noise about absent local index folders; pipefail keeps pip's own exit status)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -c "import dvan, torch, PySide6, rasterio, librosa, sounddevice" \
  || { echo "setup: the installed packages do not import; see the messages above" >&2; exit 1; }

if [ "$RUN_MAIN" = 1 ]; then
  .venv/bin/dvan info
  # builds the demo library on first run (~/.local/share/dvan/demo-library) and searches it with the demo queries
  .venv/bin/dvan demo
  if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    echo "setup: opening the viewer on the demo library (hold Space or the button and speak)"
    exec .venv/bin/dvan-app --demo
  fi
  echo "setup: no display here; on a desktop session start the viewer with: .venv/bin/dvan-app --demo"
fi
