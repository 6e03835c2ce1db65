#!/usr/bin/env bash
# `make bench-images`: 256 px thumbnails of real photographs (see
# corpus.sh) by Sluice's image path and by libvips' vipsthumbnail, on the
# same files in the same run, on one core and on two. vipsthumbnail gets
# the whole corpus in one invocation (start-up amortized); Sluice runs the
# image.thumbnail node in process, reading each file and writing its JPEG,
# like a flow. Each row is the median of three alternating runs.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
command -v vipsthumbnail >/dev/null 2>&1 || extra+=(libvips-tools)
[ -x /usr/bin/time ] || extra+=(time)
./scripts/deps.sh "${extra[@]}"
photos="$(./scripts/corpus.sh)"
files=("$photos"/*.jpg)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sluice" "$work/vips"
CGO_ENABLED=1 go build -o "$work/benchimages" ./nodes/image/internal/benchimages

# median of three numbers
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

# vips CORES → "seconds rss_kb"
vips() {
  /usr/bin/time -f '%e %M' -o "$work/t" env VIPS_CONCURRENCY="$1" \
    vipsthumbnail -s 256 -o "$work/vips/%s.jpg[Q=85]" "${files[@]}"
  cat "$work/t"
}
# sluice MODE CORES → JSON line
# (thumbnails are kept, for the PSNR comparison)
sluice() {
  local out=()
  [ "$1" = thumbnail ] && out=(-out "$work/sluice")
  GOMAXPROCS="$2" "$work/benchimages" -mode "$1" -workers "$2" "${out[@]}" "${files[@]}"
}

mp=$(sluice floor 1 | json megapixels)
n=${#files[@]}
printf 'corpus: %d photos, %.0f MP (%s)\n\n' "$n" "$mp" "$photos"
printf '%-28s %5s %9s %8s %9s %9s\n' "run" "cores" "images/s" "ms/MP" "peakRSS" "vs vips"
for cores in 1 2; do
  vt=(); vr=(); st=(); sr=(); wt=(); wr=(); ft=(); fr=()
  for round in 1 2 3; do
    read -r t r < <(vips "$cores"); vt+=("$t"); vr+=("$r")
    line=$(sluice thumbnail "$cores"); st+=("$(json seconds <<<"$line")"); sr+=("$(json max_rss_kb <<<"$line")")
    line=$(sluice watermark "$cores"); wt+=("$(json seconds <<<"$line")"); wr+=("$(json max_rss_kb <<<"$line")")
    line=$(sluice floor "$cores"); ft+=("$(json seconds <<<"$line")"); fr+=("$(json max_rss_kb <<<"$line")")
  done
  v=$(median "${vt[@]}"); s=$(median "${st[@]}"); w=$(median "${wt[@]}"); f=$(median "${ft[@]}")
  row() { awk -v name="$1" -v c="$cores" -v t="$2" -v rss="$3" -v v="$v" -v n="$n" -v mp="$mp" \
    'BEGIN { printf "%-28s %5d %9.1f %8.2f %8.0fM %8.2fx\n", name, c, n/t, t*1000/mp, rss/1024, v/t }'; }
  row "libvips vipsthumbnail" "$v" "$(median "${vr[@]}")"
  row "sluice image.thumbnail" "$s" "$(median "${sr[@]}")"
  row "sluice thumbnail+watermark" "$w" "$(median "${wr[@]}")"
  row "floor: turbo 1/8 decode" "$f" "$(median "${fr[@]}")"
  awk -v s="$s" -v f="$f" -v w="$w" 'BEGIN { printf "  thumbnail / floor: %.2fx   watermark overhead: %+.1f%%\n\n", s/f, (w/s-1)*100 }'
done
q=$("$work/benchimages" -psnr "$work/sluice" "$work/vips")
printf 'PSNR of Sluice thumbnails against libvips thumbnails: median %.1f dB, min %.1f dB\n' \
  "$(json psnr_median <<<"$q")" "$(json psnr_min <<<"$q")"

big=$(ls -S "${files[@]}" | head -1)
read -r _ vrss < <(/usr/bin/time -f '%e %M' env VIPS_CONCURRENCY=1 vipsthumbnail -s 256 -o "$work/vips/%s.jpg" "$big" 2>&1 >/dev/null)
srss=$(GOMAXPROCS=1 "$work/benchimages" -mode thumbnail "$big" | json max_rss_kb)
printf 'peak RSS on the largest file alone (%s): libvips %.0f MB, Sluice %.0f MB (%.2fx)\n' \
  "$(basename "$big")" "$((vrss / 1024))" "$((srss / 1024))" "$(awk -v a="$srss" -v b="$vrss" 'BEGIN{print a/b}')"
