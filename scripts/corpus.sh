#!/usr/bin/env bash
# Fetches a corpus of real photographs (2-24 MP JPEGs from Debian wallpaper
# packages, via `apt-get download`, no root needed) into .cache/corpus once,
# and prints the folder holding them. Used by the image tests and by
# `make bench-images`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/.cache/corpus"
packages=(mate-backgrounds ukui-wallpapers lomiri-wallpapers-20.04)
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/x" "$dir/photos"
  (cd "$dir/debs" && apt-get download "${packages[@]}" >&2) || {
    echo "corpus: apt-get download failed; try: apt-get update" >&2
    exit 1
  }
  for d in "$dir"/debs/*.deb; do dpkg -x "$d" "$dir/x"; done
  find "$dir/x" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -print0 |
    while IFS= read -r -d '' f; do cp "$f" "$dir/photos/$(basename "$f")"; done
  rm -rf "$dir/x" "$dir/debs"
  touch "$dir/.done"
fi
echo "$dir/photos"
