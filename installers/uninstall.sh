#!/usr/bin/env bash
# Remove an installed dvan. install.sh copies this script to PREFIX/uninstall.sh.
#
#   sudo /opt/dvan/uninstall.sh              remove the software (prefix, dvan commands, menu entry)
#   ~/.local/opt/dvan/uninstall.sh           the same for a user install
#   ... --purge                              also delete the invoking user's dvan data: libraries and fine-tuned
#                                            models (~/.local/share/dvan), settings (~/.config/dvan), caches
#                                            (~/.cache/dvan). Other users' data is never touched.
#   ... --prefix DIR                         uninstall the installation in DIR (default: where this script lies)
#   ... --yes                                do not ask before --purge deletes data
#
# Without --purge, user data stays, so a later install (or an upgrade) finds libraries, settings and models again.
# The Debian packages installed from the bundle stay too (they are shared system libraries).
set -euo pipefail

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
PREFIX=""; PURGE=0; YES=0
say() { printf 'uninstall: %s\n' "$*"; }
die() { printf 'uninstall: ERROR: %s\n' "$*" >&2; exit 1; }
while (($#)); do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --purge) PURGE=1; shift ;;
    --yes|-y) YES=1; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -z "$PREFIX" ]; then
  if [ -f "$SELF_DIR/.dvan-install" ]; then PREFIX="$SELF_DIR"
  elif [ "$(id -u)" = 0 ]; then PREFIX=/opt/dvan
  else PREFIX="$HOME/.local/opt/dvan"; fi
fi
[ -d "$PREFIX" ] || die "no installation at $PREFIX (use --prefix)"
PREFIX="$(cd "$PREFIX" && pwd -P)"
MARKER="$PREFIX/.dvan-install"
[ -f "$MARKER" ] || die "$PREFIX has no .dvan-install marker: not a dvan installation, not touching it"
case "$PREFIX" in /|/usr|/usr/local|/opt|/home|"${HOME:-/nonexistent}") die "refusing to remove $PREFIX" ;; esac

BIN_DIR="$(sed -n 's/^bin_dir=//p' "$MARKER")"
APP_DIR="$(sed -n 's/^applications_dir=//p' "$MARKER")"

# Commands: only links that point into this prefix.
for name in dvan dvan-app dvan-selfcheck; do
  link="${BIN_DIR:-/nonexistent}/$name"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/bin/$name" ]; then rm -f "$link"; say "removed $link"; fi
done
# Menu entry: only ours (it names this prefix).
if [ -n "$APP_DIR" ] && [ -f "$APP_DIR/dvan.desktop" ] && grep -qxF "X-Dvan-Prefix=$PREFIX" "$APP_DIR/dvan.desktop"; then
  rm -f "$APP_DIR/dvan.desktop"; say "removed $APP_DIR/dvan.desktop"
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$APP_DIR" 2>/dev/null || true
fi
rm -rf "$PREFIX"
say "removed $PREFIX"

if [ "$PURGE" = 1 ]; then
  # The invoking user's data (under sudo: the user who ran sudo, not root).
  USER_HOME="$HOME"
  if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ]; then USER_HOME="$(getent passwd "$SUDO_USER" | cut -d: -f6)"; fi
  DATA="${XDG_DATA_HOME:-$USER_HOME/.local/share}"; CONFIG="${XDG_CONFIG_HOME:-$USER_HOME/.config}"
  CACHE="${XDG_CACHE_HOME:-$USER_HOME/.cache}"
  targets=()
  for path in "$DATA/dvan" "$DATA/dvan-app" "$CONFIG/dvan" "$CACHE/dvan" "${DVAN_CACHE:-}" "${DVAN_APP_DATA:-}"; do
    [ -n "$path" ] && [ -e "$path" ] && targets+=("$path")
  done
  if ((${#targets[@]} == 0)); then say "--purge: no dvan user data found under $USER_HOME"; exit 0; fi
  printf '  %s\n' "${targets[@]}"
  if [ "$YES" != 1 ]; then
    [ -t 0 ] || die "--purge would delete the folders above (libraries, fine-tuned models, settings); add --yes"
    read -r -p "Delete these folders for good (libraries, fine-tuned models, settings)? [y/N] " answer
    [[ "$answer" =~ ^[Yy] ]] || { say "user data kept"; exit 0; }
  fi
  rm -rf "${targets[@]}"
  say "user data deleted"
else
  say "user data kept (libraries, settings, models in ~/.local/share/dvan, ~/.config/dvan, ~/.cache/dvan); --purge deletes it"
fi
