#!/usr/bin/env bash
# The long form of the delivery-guarantee tests (CI runs the short form inside `make test`):
# 100 random SIGKILLs of gatewayd while pads are pressed (a third of them also restart PostgreSQL),
# and a store outage of OUTAGE_SECONDS (default 2 hours; time-compressed in that the hall presses
# 25 ratings a second, a busy hall's day in under an hour), then the disk-full trial.
#
#   scripts/delivery-soak.sh [KILLS] [OUTAGE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory deps python-deps
swift build --build-tests
export HALL_GATEWAY_SOAK_KILLS=${1:-100}
export HALL_GATEWAY_SOAK_OUTAGE_SECONDS=${2:-7200}
scripts/test-services.sh swift test --skip-build --filter DeliveryGuaranteeTests
