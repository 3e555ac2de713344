#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, then runs every test
# of the workspace (unit, table-driven, end-to-end against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --locked -p ssfd
cargo test --locked --workspace "$@"
