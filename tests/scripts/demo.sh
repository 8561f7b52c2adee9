#!/usr/bin/env bash
# The ioth demo: two isolated vdestack stacks talking over a VDE switch.
#   tests/scripts/demo.sh [rust|c]
# Starts a switch (vde_plug), an echo server on one stack and a terminal client on another,
# types a few lines into the client, shows the echo, then removes everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
lang=${1:-rust}
tests/scripts/deps.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "the demo needs root: vdestack stacks create network namespaces and tap devices" >&2
  exit 1
fi
# Everything the demo runs: the examples, libioth.so, ioth-host and the plug-ins it loads.
cargo build --workspace --lib --bins --examples --quiet
target=${CARGO_TARGET_DIR:-target}/debug
case "$lang" in
  rust) server=$target/examples/iothtest_server; client=$target/examples/iothtest_client ;;
  c)
    out=$target/c-demo; mkdir -p "$out"
    for p in iothtest_server iothtest_client; do
      gcc -Wall -O2 -o "$out/$p" "client/examples/c/$p.c" -Iclient/include \
        -L"$target" -lioth -Wl,-rpath,"$(cd "$target" && pwd)" -lpthread
    done
    server=$out/iothtest_server; client=$out/iothtest_client ;;
  *) echo "usage: $0 [rust|c]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d /tmp/ioth-demo.XXXXXX)
swpid= ; srvpid=
cleanup() {
  [ -n "$srvpid" ] && kill "$srvpid" 2>/dev/null && wait "$srvpid" 2>/dev/null || true
  [ -n "$swpid" ] && kill "$swpid" 2>/dev/null && wait "$swpid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== switch: vde_plug null:// switch://$tmp/sw"
vde_plug null:// "switch://$tmp/sw" & swpid=$!
# Ready once its control socket listens (the file appears a moment before listen(2)).
listening() { ss -xlH 2>/dev/null | grep -qF "$tmp/sw/ctl"; }
for _ in $(seq 100); do listening && break; sleep 0.05; done
listening || { echo "the switch did not start" >&2; exit 1; }

echo "== server: $server vdestack vde://$tmp/sw"
"$server" vdestack "vde://$tmp/sw" > "$tmp/server.log" 2>&1 & srvpid=$!
tail -n +1 -f --pid="$srvpid" "$tmp/server.log" | sed -u 's/^/[server] /' &
for _ in $(seq 200); do
  grep -q listening "$tmp/server.log" && break
  kill -0 "$srvpid" 2>/dev/null || { echo "the server failed" >&2; exit 1; }
  sleep 0.05
done
grep -q listening "$tmp/server.log" || { echo "the server did not start listening" >&2; exit 1; }

echo "== client: $client vdestack vde://$tmp/sw  (typing 3 lines)"
{ for line in "hello from the client stack" "two kernels, one switch, no shared namespace" "bye"; do
    echo "$line"; sleep 0.3; done; } | timeout 30 "$client" vdestack "vde://$tmp/sw" | sed -u 's/^/[client] echoed: /'
hostpid=$(sed -n 's/.*host pid \([0-9]*\).*/\1/p' "$tmp/server.log" | head -n1)
echo "== stopping the server; its stack's host (pid $hostpid) ends with it"
kill "$srvpid"; wait "$srvpid" 2>/dev/null || true; srvpid=
for _ in $(seq 100); do kill -0 "$hostpid" 2>/dev/null || break; sleep 0.02; done
if kill -0 "$hostpid" 2>/dev/null; then echo "host $hostpid still running" >&2; exit 1; fi
echo "== done: both stacks and their namespaces are gone; the switch is stopped next"
