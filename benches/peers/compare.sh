#!/usr/bin/env bash
# The largest lossless statsd rate of ssfd, Etsy's statsd (npm `statsd`) and collectd's
# statsd plugin (Debian `collectd-core`), driven by the same sender (`loadgen blast`)
# on the same machine in the same run, at 1 and 10 lines per datagram.
#   benches/peers/compare.sh            (installs the peers into /tmp/ssfd-peers first)
# A rate is lossless when every line sent is counted by the daemon.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=/tmp/ssfd-peers
mkdir -p "$PEERS"
[ -d "$PEERS/node_modules/statsd" ] || (cd "$PEERS" && npm install --silent statsd >/dev/null)
command -v collectd >/dev/null || apt-get install -y -qq --no-install-recommends collectd-core >/dev/null
cargo build --release -q -p ssfd -p ssfd-benches
LOADGEN=target/release/loadgen
PORT=18125

wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# each start_* starts the daemon on udp $PORT and sets PID; each count_* prints bench.c's total
start_ssfd() {
  cat > "$PEERS/ssfd.yaml" <<YAML
statsd_listen_addresses: [udp://127.0.0.1:$PORT]
http_address: 127.0.0.1:28127
interval: 1s
YAML
  target/release/ssfd serve -f "$PEERS/ssfd.yaml" 2>/dev/null & PID=$!
  wait_port 28127
}
count_ssfd() { sleep 2.5; curl -s 127.0.0.1:28127/metrics | awk '/^bench_c_total /{print $2}' | sed 's/^$/0/'; }

start_etsy() {
  cat > "$PEERS/etsy.js" <<JS
{ port: $PORT, mgmt_port: 28126, flushInterval: 3600000, backends: [], deleteCounters: false }
JS
  node "$PEERS/node_modules/statsd/stats.js" "$PEERS/etsy.js" >/dev/null 2>&1 & PID=$!
  wait_port 28126
}
count_etsy() { sleep 1; exec 3<>/dev/tcp/127.0.0.1/28126; echo counters >&3; timeout 2 cat <&3 | tr -d "',{}" | awk '$1=="bench.c:"{print $2}'; exec 3<&-; }

start_collectd() {
  cat > "$PEERS/collectd.conf" <<CONF
Hostname "bench"
Interval 1
LoadPlugin statsd
LoadPlugin csv
<Plugin statsd>
  Host "127.0.0.1"
  Port "$PORT"
  DeleteCounters false
</Plugin>
<Plugin csv>
  DataDir "$PEERS/csv"
  StoreRates false
</Plugin>
CONF
  rm -rf "$PEERS/csv"
  collectd -f -C "$PEERS/collectd.conf" >/dev/null 2>&1 & PID=$!
  sleep 1
}
# the derive value of the last row collectd wrote (a running total)
count_collectd() { sleep 3; tail -q -n 1 "$PEERS"/csv/bench/statsd/derive-bench.c-* 2>/dev/null | awk -F, '{printf "%d\n", $2}'; }

ACHIEVED=0
lossless() { # daemon lines_per_datagram rate → returns 0 when lossless; sets ACHIEVED
  local daemon=$1 lines=$2 rate=$3 out sent counted
  "start_$daemon"
  sleep 0.5
  out=$($LOADGEN blast --target 127.0.0.1:$PORT --rate "$rate" --seconds 3 --lines "$lines")
  sent=${out% *}; ACHIEVED=${out#* }
  counted=$("count_$daemon" || echo 0)
  kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true
  echo "  $daemon lines/datagram=$lines asked=$rate achieved=$ACHIEVED sent=$sent counted=${counted:-0}" >&2
  [ "${counted:-0}" = "$sent" ]
}

echo "| daemon | lines per datagram | largest lossless rate achieved (lines/s) | first lossy step |"
echo "|---|---|---|---|"
for lines in 1 10; do
  for daemon in etsy collectd ssfd; do
    best=0; lossy="none up to the sender's limit"
    for rate in 10000 20000 40000 80000 160000 320000 640000 1280000 2560000 5120000; do
      if lossless "$daemon" "$lines" "$rate"; then
        best=$ACHIEVED
        # the sender cannot go faster: stop climbing
        [ "${ACHIEVED%.*}" -lt $((rate * 8 / 10)) ] && break
      else
        lossy="asked $rate, achieved $ACHIEVED"; break
      fi
    done
    echo "| $daemon | $lines | $best | $lossy |"
  done
done
