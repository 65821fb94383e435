#!/bin/sh
# tools/spool-ratio.sh - fcmd's ingress with the spool in each fsync mode, as
# a ratio of its ingress without one.
#
# One run of each varies by 15% or more on a shared machine, and the spooled
# modes more (they wait for the disk), so this runs ROUNDS rounds back to back,
# each one tools/bench.sh without a spool and then one per mode, prints every
# round's requests/s and ratios, and the median ratio of each mode.
# Environment: ROUNDS (3), MODES ("never batch always"), and what
# tools/bench.sh reads (DURATION is 5 s here unless set).
set -eu
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
MODES=${MODES:-never batch always}
DURATION=${DURATION:-5}
export DURATION
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

rate() { # SPOOL -> fcmd's requests/s
    SPOOL=$1 tools/bench.sh >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
    r=$(awk '/^fcmd ingress/ {print $4}' "$work/out")
    case $r in '' | *[!0-9]*)
        echo "spool-ratio: no ingress figure for spool $1" >&2
        exit 1
        ;;
    esac
    echo "$r"
}

i=1
while [ "$i" -le "$ROUNDS" ]; do
    off=$(rate off)
    [ "$off" -gt 0 ] || { echo "spool-ratio: no requests without a spool" >&2; exit 1; }
    line="round $i: off $off"
    for m in $MODES; do
        r=$(rate "$m")
        pct=$((r * 100 / off))
        echo "$pct" >>"$work/$m"
        line="$line | $m $r ($pct%)"
    done
    echo "$line"
    i=$((i + 1))
done

line="median ratio to no spool over $ROUNDS round(s):"
for m in $MODES; do
    line="$line $m $(sort -n "$work/$m" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}')%"
done
echo "$line"
