#!/usr/bin/env bash
# Builds the real client libraries' senders for `loadgen client --sender`:
#   - target/datadog-go-sender: Go's datadog-go (Debian's golang-github-datadog-datadog-go-dev,
#     v2.1) built with Debian's Go in GOPATH mode (no module download);
#   - benches/clients/python_datadog.py runs as is on the `datadog` package that
#     scripts/install-test-deps.sh installs;
#   - benches/clients/node_hot_shots.js runs on npm's hot-shots, installed here into
#     target/clients (run it with NODE_PATH=target/clients/node_modules).
# Installs Debian's golang-go and the datadog-go sources first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/DataDog/datadog-go ]; then
  apt-get install -y -qq --no-install-recommends golang-go golang-github-datadog-datadog-go-dev >/dev/null
fi
mkdir -p target
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-/tmp/ssfd-go-cache}" \
  go build -o target/datadog-go-sender benches/clients/datadog_go.go
python3 -c 'import datadog' 2>/dev/null || pip install -q 'datadog>=0.49'
[ -d target/clients/node_modules/hot-shots ] || npm install --silent --prefix target/clients hot-shots@17 >/dev/null
echo "built target/datadog-go-sender; run e.g.:"
echo "  GOMAXPROCS=1 target/release/loadgen client --sender target/datadog-go-sender --lines 20 --runs 8"
echo "  target/release/loadgen client --sender benches/clients/python_datadog.py --lines 20 --runs 3"
echo "  NODE_PATH=target/clients/node_modules target/release/loadgen client --sender benches/clients/node_hot_shots.js --lines 20 --runs 3"
