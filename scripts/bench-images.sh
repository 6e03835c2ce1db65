#!/usr/bin/env bash
# `make bench-images`: 256 px thumbnails of real photographs (see
# corpus.sh) by Sluice's image path and by libvips' vipsthumbnail, on the
# same files in the same run, on one core and on two. vipsthumbnail gets
# the whole corpus in one invocation (start-up amortized); Sluice runs the
# image.thumbnail node in process, reading each file and writing its JPEG,
# like a flow. Each row is the median of three alternating runs. Last, end
# to end: the thumbnails example run by `sluice run` against vipsthumbnail
# over the same files (see the section at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
command -v vipsthumbnail >/dev/null 2>&1 || extra+=(libvips-tools)
[ -x /usr/bin/time ] || extra+=(time)
./scripts/deps.sh "${extra[@]}"
photos="$(./scripts/corpus.sh)"
files=("$photos"/*.jpg)
work="$(mktemp -d)"
sluice_pid=
trap '[ -z "$sluice_pid" ] || kill "$sluice_pid" 2>/dev/null; rm -rf "$work"' EXIT
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

# End to end: the shipped examples/thumbnails flow in the real binary
# (`sluice run` on the embedded defaults: SQLite queue and ledger, folder
# buckets settling 200 ms; thumbnail, watermark, file written, database row,
# event) against vipsthumbnail over the same files, all cores, three
# alternating rounds. Sluice is timed from the first upload (a plain cp
# into the uploads folder, once the engine is ready) until the last
# thumbnail file is there; start-up is not timed. vipsthumbnail is timed as
# one process over every file, start-up included (~0.2 s).
CGO_ENABLED=1 go build -o "$work/sluice-bin" ./cmd/sluice
cores=$(nproc)
# e2e → seconds from the first upload to the last thumbnail
e2e() {
  local home addr="" i pid t0 t1 done_=()
  home="$(mktemp -d -p "$work")"
  "$work/sluice-bin" --home "$home" --log-format json run --listen 127.0.0.1:0 examples/thumbnails >"$home/log" 2>&1 &
  pid=$!
  sluice_pid=$pid
  for ((i = 0; ; i++)); do
    [ -z "$addr" ] && addr=$(sed -n 's/.*"addr":"\(http:[^"]*\)".*/\1/p' "$home/log" | head -1)
    [ -n "$addr" ] && curl -sf "$addr/readyz" >/dev/null && break
    if ! kill -0 "$pid" 2>/dev/null || ((i > 600)); then
      echo "bench-images: sluice run did not become ready: $(tail -5 "$home/log")" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.05
  done
  t0=$EPOCHREALTIME
  cp "${files[@]}" "$home/buckets/uploads/" || { kill "$pid"; return 1; }
  shopt -s nullglob
  for ((i = 0; ; i++)); do
    done_=("$home"/buckets/thumbnails/*)
    ((${#done_[@]} >= n)) && break
    if ((i > 30000)); then
      echo "bench-images: ${#done_[@]} of $n thumbnails after 10 min: $(tail -5 "$home/log")" >&2
      kill "$pid"
      return 1
    fi
    sleep 0.02
  done
  t1=$EPOCHREALTIME
  shopt -u nullglob
  local ok
  ok=$(curl -sf "$addr/metrics" | sed -n 's/^sluice_runs_total{flow="thumbnails",status="succeeded"} \([0-9]*\)$/\1/p')
  kill -INT "$pid"
  wait "$pid" || true
  sluice_pid=
  if [ "${ok:-0}" -lt "$n" ]; then
    echo "bench-images: $n thumbnails written but ${ok:-0} runs succeeded: $(grep -m3 '"level":"WARN\|"level":"ERROR' "$home/log")" >&2
    return 1
  fi
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
et=(); vt=()
for round in 1 2 3; do
  if ((round % 2)); then
    read -r t _ < <(vips "$cores"); vt+=("$t"); t=$(e2e); et+=("$t")
  else
    t=$(e2e); et+=("$t"); read -r t _ < <(vips "$cores"); vt+=("$t")
  fi
done
v=$(median "${vt[@]}"); s=$(median "${et[@]}")
spread() { printf '%s\n' "$@" | sort -g | awk -v n="$n" '{ v[NR] = $1 } END { printf "%.1f-%.1f", n / v[NR], n / v[1] }'; }
printf '\nend to end, %d cores, %d photos (median of 3 alternating rounds, min-max):\n' "$cores" "$n"
awk -v n="$n" -v t="$v" -v s="$(spread "${vt[@]}")" 'BEGIN { printf "  %-56s %6.1f images/s (%s)\n", "vipsthumbnail (thumbnails only)", n / t, s }'
awk -v n="$n" -v t="$s" -v s="$(spread "${et[@]}")" 'BEGIN { printf "  %-56s %6.1f images/s (%s)\n", "sluice run examples/thumbnails (+watermark, row, event)", n / t, s }'
awk -v s="$s" -v v="$v" 'BEGIN { printf "  sluice / vipsthumbnail: %.2fx\n", v / s }'
