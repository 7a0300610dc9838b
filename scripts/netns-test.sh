#!/usr/bin/env bash
# End-to-end test of the `cusp` CLI across two network namespaces joined by a veth pair
# (198.18.0.0/15, the benchmarking range), rate-limited with tc tbf:
#   (a) 100 MB `cusp send` -> `cusp recv`, sha256 of both files compared;
#   (b) the same while the client's address changes mid-transfer (198.18.0.2 -> .3);
#   (c) 20 MB through `cusp relay` (25 ms delay, 1% loss each way).
# Needs root, `ip` and `tc`; prints SKIP and exits 0 when they are not available.
# Every step has a timeout; namespaces are removed on exit. Exit status: 0 iff all passed.
#
# Environment: CUSP_BIN (binary to use), RATE (default 200mbit), KEEP=1 keeps the work dir.

set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${RATE:-200mbit}

skip() { echo "SKIP: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, tc)"
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "installing iproute2 ..."
        timeout 300 apt-get install -y -qq iproute2 >/dev/null 2>&1 \
            || (timeout 300 apt-get update -qq >/dev/null 2>&1 \
                && timeout 300 apt-get install -y -qq iproute2 >/dev/null 2>&1)
    fi
    command -v ip >/dev/null && command -v tc >/dev/null \
        || skip "'ip' and 'tc' (iproute2) are missing and could not be installed"
fi

BIN=${CUSP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cusp}
if [ ! -x "$BIN" ]; then
    echo "building $BIN ..."
    (cd "$ROOT" && timeout 900 cargo build --release -q -p cusp-cli) || { echo "FAIL: build"; exit 1; }
fi

ID=$$
NS_S=cusp-srv-$ID
NS_C=cusp-cli-$ID
NS_R=cusp-rly-$ID
VS=cvs$ID
VC=cvc$ID
WORK=$(mktemp -d /tmp/cusp-netns.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    ip netns del "$NS_S" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    ip netns del "$NS_R" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

S() { ip netns exec "$NS_S" "$@"; }
C() { ip netns exec "$NS_C" "$@"; }

ip netns add "$NS_S" 2>"$WORK/err" || skip "cannot create network namespaces: $(cat "$WORK/err")"
ip netns add "$NS_C"
ip link add "$VS" netns "$NS_S" type veth peer name "$VC" netns "$NS_C"
S ip addr add 198.18.0.1/24 dev "$VS"
C ip addr add 198.18.0.2/24 dev "$VC"
# Deleting the primary address must keep the secondary (case b).
C sysctl -qw "net.ipv4.conf.$VC.promote_secondaries=1"
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
S ip link set "$VS" up
C ip link set "$VC" up
S tc qdisc add dev "$VS" root tbf rate "$RATE" burst 256kb latency 50ms
C tc qdisc add dev "$VC" root tbf rate "$RATE" burst 256kb latency 50ms
if command -v ping >/dev/null; then
    C timeout 5 ping -c1 -W2 198.18.0.1 >/dev/null || { echo "FAIL: veth link does not work"; exit 1; }
fi
echo "namespaces $NS_S (198.18.0.1) and $NS_C (198.18.0.2), tbf $RATE, binary $BIN"

head -c 100000000 /dev/urandom > "$WORK/big.bin"
head -c 20000000 /dev/urandom > "$WORK/mid.bin"
FAILED=0

# transfer CASE FILE LISTEN SEND_TO [HOOK]: recv --once in the server namespace, send from
# the client namespace, HOOK (a function) runs in the background meanwhile.
transfer() {
    local case=$1 file=$2 listen=$3 to=$4 hook=${5:-} out="$WORK/out-$1" t0 rc_s rc_r hook_pid=
    mkdir -p "$out"
    S timeout 240 "$BIN" recv "$out" --listen "$listen" --once >"$WORK/$case-recv.log" 2>&1 &
    local rpid=$!
    PIDS+=("$rpid")
    sleep 0.5
    t0=$(date +%s.%N)
    if [ -n "$hook" ]; then "$hook" >"$WORK/$case-hook.log" 2>&1 & hook_pid=$!; fi
    C timeout 180 "$BIN" send "$file" "$to" --timeout 10 >"$WORK/$case-send.log" 2>&1
    rc_s=$?
    wait "$rpid"
    rc_r=$?
    [ -n "$hook_pid" ] && wait "$hook_pid"
    local secs
    secs=$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo "?")
    local want got
    want=$(sha256sum <"$file" | cut -d' ' -f1)
    got=$(sha256sum <"$out/$(basename "$file")" 2>/dev/null | cut -d' ' -f1)
    if [ "$rc_s" = 0 ] && [ "$rc_r" = 0 ] && [ "$want" = "$got" ]; then
        echo "PASS ($case): $(basename "$file") $(stat -c %s "$file") bytes in ${secs} s, sha256 $want"
    else
        echo "FAIL ($case): send exit $rc_s, recv exit $rc_r, sha256 sent $want received ${got:-<none>}"
        for f in "$WORK/$case"-*.log; do echo "--- $(basename "$f")"; tail -n 15 "$f"; done
        FAILED=1
    fi
}

# (a) plain transfer.
transfer a "$WORK/big.bin" 198.18.0.1:8585 198.18.0.1:8585

# (b) the client moves to 198.18.0.3 while sending.
move_client() {
    sleep 1.5
    echo "$(date +%T.%N) adding 198.18.0.3, deleting 198.18.0.2"
    C ip addr add 198.18.0.3/24 dev "$VC"
    C ip addr del 198.18.0.2/24 dev "$VC"
    C ip -4 addr show dev "$VC"
}
transfer b "$WORK/big.bin" 198.18.0.1:8586 198.18.0.1:8586 move_client
# For the record: when the address changed, and where the receiver saw the sender.
grep -h "adding" "$WORK/b-hook.log" 2>/dev/null | sed 's/^/     /'
grep -ho "from [0-9A-F]* at [^ ]*\(, moved to [^ ]*\)\?" "$WORK/b-recv.log" 2>/dev/null | sed 's/^/     receiver: /'
C ip addr del 198.18.0.3/24 dev "$VC" 2>/dev/null
C ip addr add 198.18.0.2/24 dev "$VC" 2>/dev/null

# (c) through the impairment relay (in the server namespace): 25 ms, 1% loss each way.
S timeout 300 "$BIN" relay 198.18.0.1:9000 198.18.0.1:8587 --delay 25ms --loss 1% \
    >"$WORK/c-relay.log" 2>&1 &
PIDS+=("$!")
sleep 0.3
transfer c "$WORK/mid.bin" 198.18.0.1:8587 198.18.0.1:9000

if [ "$FAILED" = 0 ]; then echo "ALL PASS"; else echo "SOME FAILED"; fi
exit "$FAILED"
