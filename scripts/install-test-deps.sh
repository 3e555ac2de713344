#!/usr/bin/env bash
# Installs what ssfd's tests need besides the Rust toolchain, and says so:
#   - Python clients by others: datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking
#   - Debian packages: none yet (Prometheus and Chromium arrive with later issues)
set -euo pipefail
echo "install-test-deps: installing Python test clients (datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking)"
python3 -m pip install --quiet --disable-pip-version-check \
    'datadog>=0.49' 'statsd>=4' 'grpcio>=1.60' 'grpcio-tools>=1.60' 'grpcio-health-checking>=1.60'
python3 -c 'import datadog, statsd, grpc, grpc_tools, grpc_health' \
    && echo "install-test-deps: python clients ready"
