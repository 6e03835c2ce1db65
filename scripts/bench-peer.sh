#!/usr/bin/env bash
# `make bench-peer`: Sluice next to Benthos on the same machine, in the
# same run. Both consume 200,000 JSON messages through the same shape of
# pipeline: a mapping computing total, a switch whose check (qty < 0)
# routes elsewhere, a mapping, and no output.
#
#   benthos batched    Benthos core v4.60.0, generate batch_size 100, threads 2
#   benthos unbatched  the same, batch_size 1 (for reference)
#   benthos json       batched, fed JSON text as a topic delivers it, which
#                        its first mapping parses (batched's generate makes
#                        structured values: its processors never parse,
#                        while Sluice decodes every message it consumes)
#   sluice mem         the engine on mem:// (no state database, no ledger)
#   sluice sqlite      the engine on the durable embedded queue, completion ledger on
#   sluice sqlite-rf   the same with `record: failures` (successes leave their
#                        completion in the ledger, and no run record)
#   sluice rf-gogc100  sqlite-rf with Go's default GC pace, as Benthos runs
#                        (the sluice runners above pace it as `sluice run`
#                        does by default: --gc-target 256MiB)
#   mem floor,         no engine: the queued messages read through the broker's
#   sqlite floor         stream, committed every 100 (what the queue itself costs)
#
# Benthos is built from bench/peer/benthos, its own Go module (Sluice's
# go.mod never depends on it), into .cache/bin/benthos-peer, and rebuilt
# only when that module's sources change. Each side times itself from the
# start of its pipeline until the last message is processed (Benthos:
# Stream.Run of a generate input with a count; Sluice: Engine.Run after the
# messages were queued, until the last run finished); process start-up and
# Sluice's queueing are not timed. The runners alternate over ROUNDS rounds
# (default 3), the order rotating each round so the machine's drift hits
# them alike; the summary gives medians with their min-max and the ratios
# of the issue's goals (on messages/s), each also on CPU time per message
# (the process's user + system time while timed), which other work on a
# shared machine disturbs less. Environment: ROUNDS, BENCH_PEER_COUNT.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac
rounds="${ROUNDS:-3}"
count="${BENCH_PEER_COUNT:-200000}"
export BENCH_PEER_COUNT="$count"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench-peer: ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2; }
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "bench-peer: BENCH_PEER_COUNT must be a positive integer, not '$count'" >&2; exit 2; }
./scripts/deps.sh

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Benthos: cached, rebuilt when its module's sources change.
peer=bench/peer/benthos
bin="$PWD/.cache/bin/benthos-peer"
sum=$(cat "$peer/go.mod" "$peer/go.sum" "$peer"/*.go | sha256sum | cut -d' ' -f1)
if [ ! -x "$bin" ] || [ "$(cat "$bin.sum" 2>/dev/null)" != "$sum" ]; then
  echo "building benthos-peer (Benthos core, own module $peer; once)" >&2
  mkdir -p "$(dirname "$bin")"
  (cd "$peer" && go build -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  echo "$sum" >"$bin.sum"
fi
CGO_ENABLED=1 go build -o "$work/sluicebench" ./bench/peer/sluicebench

json() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

# measure NAME → "messages/s cpu_seconds" (the side's own timing, and the
# CPU time its process used meanwhile); fails loudly when a side processed
# fewer messages than asked.
measure() {
  local line
  case "$1" in
    benthos-batched) line=$("$bin" bench "$peer/batched.yaml") ;;
    benthos-unbatched) line=$("$bin" bench "$peer/unbatched.yaml") ;;
    benthos-json) line=$("$bin" bench "$peer/batched-json.yaml") ;;
    sluice-mem) line=$("$work/sluicebench" -queue mem -n "$count") ;;
    sluice-sqlite) line=$("$work/sluicebench" -queue sqlite -n "$count" -dir "$(mktemp -d -p "$work")") ;;
    sluice-sqlite-rf) line=$("$work/sluicebench" -queue sqlite -record failures -n "$count" -dir "$(mktemp -d -p "$work")") ;;
    sluice-rf-gogc100) line=$("$work/sluicebench" -queue sqlite -record failures -gc-target 0 -n "$count" -dir "$(mktemp -d -p "$work")") ;;
    mem-floor) line=$("$work/sluicebench" -queue mem -floor -n "$count") ;;
    sqlite-floor) line=$("$work/sluicebench" -queue sqlite -floor -n "$count" -dir "$(mktemp -d -p "$work")") ;;
  esac
  if [ "$(json messages <<<"$line")" != "$count" ]; then
    echo "bench-peer: $1 processed $(json messages <<<"$line") of $count messages: $line" >&2
    return 1
  fi
  printf '%s %s\n' "$(json msgs_per_s <<<"$line")" "$(json cpu_seconds <<<"$line")"
}

names=(benthos-batched sluice-mem sluice-sqlite sluice-sqlite-rf sluice-rf-gogc100 benthos-json benthos-unbatched mem-floor sqlite-floor)
declare -A figs cpus
printf '%d messages, %d rounds, %s cores, load average %s\n\n' "$count" "$rounds" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s' round
printf ' %17s' "${names[@]}"
printf '   (messages/s)\n'
for ((r = 0; r < rounds; r++)); do
  # rotate the order: round r starts with the r-th runner
  order=("${names[@]:r%${#names[@]}}" "${names[@]:0:r%${#names[@]}}")
  declare -A this=()
  for name in "${order[@]}"; do
    read -r rate cpu < <(measure "$name")
    this[$name]=$rate
    figs[$name]+="$rate "
    cpus[$name]+="$(awk -v c="$cpu" -v n="$count" 'BEGIN { print c * 1e6 / n }') "
  done
  printf '%-6d' $((r + 1))
  for name in "${names[@]}"; do printf ' %17.0f' "${this[$name]}"; done
  printf '\n'
done

# stats FIGURES... → "median min max"
stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%s %s %s\n", m, v[1], v[NR] }'; }
printf '\n%-18s %12s %22s %16s %16s\n' "messages/s" "median" "min - max" "CPU µs/message" "min - max"
declare -A med cmed
for name in "${names[@]}"; do
  read -r m lo hi < <(stats ${figs[$name]})
  read -r cm clo chi < <(stats ${cpus[$name]})
  med[$name]=$m
  cmed[$name]=$cm
  printf '%-18s %12.0f %10.0f - %-10.0f %10.1f %10.1f - %.1f\n' "$name" "$m" "$lo" "$hi" "$cm" "$clo" "$chi"
done

# ratio A B GOAL: the ratio of medians, and the min-max of the per-round
# ratios (each round's A over the same round's B).
# The same on CPU time per message (B's over A's), which other work on the
# machine disturbs less than wall time.
ratio() {
  local a=(${figs[$1]}) b=(${figs[$2]}) ca=(${cpus[$1]}) cb=(${cpus[$2]}) per=() cper=() i lo hi clo chi
  for i in "${!a[@]}"; do
    per+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { print x / y }')")
    cper+=("$(awk -v x="${ca[$i]}" -v y="${cb[$i]}" 'BEGIN { print y / x }')")
  done
  read -r _ lo hi < <(stats "${per[@]}")
  read -r _ clo chi < <(stats "${cper[@]}")
  awk -v a="${med[$1]}" -v b="${med[$2]}" -v lo="$lo" -v hi="$hi" -v ca="${cmed[$1]}" -v cb="${cmed[$2]}" \
    -v clo="$clo" -v chi="$chi" -v goal="$3" -v name="$1 / $2" 'BEGIN {
    r = a / b
    printf "%-36s %5.2fx (rounds %.2f-%.2f)  on CPU time %5.2fx (rounds %.2f-%.2f)", name, r, lo, hi, cb / ca, clo, chi
    if (goal > 0) printf "  goal >= %.1f: %s", goal, (r >= goal) ? "met" : "not met"
    printf "\n" }'
}
# The goals: mem:// at 1.0x Benthos batched, and 0.5x on the durable queue
# with the completion ledger on: its row per input, committed with the
# window (record: failures). Sluice's default also writes a run record per
# message, which the goal does not ask for: shown without a goal.
printf '\nGoals: mem:// >= 1.0x; the durable queue with the completion ledger on >= 0.5x:\n'
ratio sluice-mem benthos-batched 1.0
ratio sluice-sqlite-rf benthos-batched 0.5
printf '\nThe default, a run record per message besides the ledger:\n'
ratio sluice-sqlite benthos-batched 0
printf '\nLike for like (both sides parse each message'"'"'s JSON):\n'
for name in sluice-mem sluice-sqlite sluice-sqlite-rf; do
  ratio $name benthos-json 0
done
printf '\nFor reference:\n'
for pair in "sluice-rf-gogc100 benthos-batched" "benthos-batched benthos-json" "benthos-batched benthos-unbatched" "sluice-mem mem-floor" "sluice-sqlite sqlite-floor"; do
  ratio $pair 0
done
