# tools/bench-lib.sh - what the benchmark scripts share, sourced after they
# cd to the tree: a scratch folder ($work), the processes they started
# ($pids, stopped with SIGTERM on exit), polling with a bound, and wrk's
# rate.
# shellcheck shell=sh
work=$(mktemp -d)
pids=

cleanup() {
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

poll() { # tries of 50 ms, then the command
    n=$1
    shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt "$n" ] || { echo "$(basename "$0"): timed out waiting for: $*" >&2; exit 1; }
        sleep 0.05
    done
}

rps() { awk '/^Requests\/sec/ {printf "%d", $2}' "$1"; }
