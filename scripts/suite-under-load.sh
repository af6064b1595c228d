#!/usr/bin/env bash
# The README's test command N times in a row (default 5) beside two busy processes, as a loaded CI
# machine would run it (issue 18). Prints one line per run; exits 1 at the first red run.
#   scripts/suite-under-load.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
yes > /dev/null & y1=$!
yes > /dev/null & y2=$!
trap 'kill $y1 $y2 2>/dev/null' EXIT
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  log=$(mktemp -t uap-load-XXXX.log)
  if npm test > "$log" 2>&1; then
    echo "run $i/$n: green in $(( $(date +%s) - start )) s ($(grep -E '^ +Tests ' "$log" | tail -1 | tr -s ' '))"
  else
    echo "run $i/$n: RED after $(( $(date +%s) - start )) s; log: $log"
    exit 1
  fi
done
