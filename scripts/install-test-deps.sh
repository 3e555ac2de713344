#!/usr/bin/env bash
# Installs what ssfd's tests need besides the Rust toolchain, and says so:
#   - Python clients by others: datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking
#   - Debian packages: prometheus (the server and promtool, for the exposition tests)
set -euo pipefail
echo "install-test-deps: installing Python test clients (datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking)"
python3 -m pip install --quiet --disable-pip-version-check \
    'datadog>=0.49' 'statsd>=4' 'grpcio>=1.60' 'grpcio-tools>=1.60' 'grpcio-health-checking>=1.60'
python3 -c 'import datadog, statsd, grpc, grpc_tools, grpc_health' \
    && echo "install-test-deps: python clients ready"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "install-test-deps: installing Debian package prometheus (server and promtool)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# the package starts a system Prometheus on :9090 where systemd runs; the tests start their own
promtool --version | head -1
