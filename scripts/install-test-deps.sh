#!/usr/bin/env bash
# Installs what ssfd's tests need besides the Rust toolchain, and says so:
#   - Python clients by others: datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking
#   - Python: selenium (drives the web UI check, tests/python/ui_check.py)
#   - Python: the OpenTelemetry SDK and its OTLP exporters (tests/python/otel_client.py)
#   - Debian packages: prometheus (the server and promtool, for the exposition tests),
#     chromium and chromium-driver (headless browser for the web UI check)
set -euo pipefail
echo "install-test-deps: installing Python test clients (datadog, statsd, grpcio, grpcio-tools, grpcio-health-checking, selenium, opentelemetry-sdk and OTLP exporters)"
python3 -m pip install --quiet --disable-pip-version-check \
    'datadog>=0.49' 'statsd>=4' 'grpcio>=1.60' 'grpcio-tools>=1.60' 'grpcio-health-checking>=1.60' \
    'selenium>=4.11' 'opentelemetry-sdk>=1.20' 'opentelemetry-exporter-otlp-proto-grpc>=1.20' \
    'opentelemetry-exporter-otlp-proto-http>=1.20'
python3 -c 'import datadog, statsd, grpc, grpc_tools, grpc_health, selenium, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' \
    && echo "install-test-deps: python clients ready"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "install-test-deps: installing Debian package prometheus (server and promtool)"
    apt_install prometheus
fi
# the package starts a system Prometheus on :9090 where systemd runs; the tests start their own
promtool --version | head -1
# the web UI check names these paths explicitly, so Selenium Manager never downloads a browser
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "install-test-deps: installing Debian packages chromium and chromium-driver (web UI check)"
    apt_install chromium chromium-driver
fi
/usr/bin/chromedriver --version | head -1
