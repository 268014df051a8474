# The two commands: `make demo` runs the simulated demo hall, `make test` runs the whole suite.
# Both install what is missing first (Debian packages through apt-get, test tools through pip).
SHELL := /bin/bash
APT_PACKAGES := pkg-config libsqlite3-dev libmodbus-dev libserialport-dev libmosquitto-dev mbpoll socat \
	postgresql mosquitto mosquitto-clients openssl prometheus systemd curl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT_BUILD_FLAGS ?=
# Seconds each decoder's fuzz target runs in `make test`; docs/fuzzing.md has a longer run.
FUZZ_SECONDS ?= 5

.PHONY: all deps python-deps build demo test fixtures-check clean

all: build

deps:
	@missing=$$(for package in $(APT_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

python-deps:
	@python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-test.txt

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

demo: build
	.build/debug/gatewayd run

test: deps python-deps
	swift build --build-tests $(SWIFT_BUILD_FLAGS)
	@# One suite at a time: the serial-line suites time real pseudo-terminals, and on two cores the delivery
	@# trials' gatewayd processes and databases beside them stretch that timing (about 45 s longer in all).
	scripts/test-services.sh swift test --skip-build --no-parallel $(SWIFT_BUILD_FLAGS)
	$(MAKE) --no-print-directory fixtures-check
	$(SUDO) deploy/test-unit.sh .build/debug/gatewayd
	fuzz/run.sh $(FUZZ_SECONDS)

# The protocol fixtures are what python-escpos, pymodbus and mbpoll produce: regenerate them and compare.
fixtures-check: python-deps
	@python3 scripts/escpos-fixtures.py > /dev/null
	@python3 scripts/modbus-fixtures.py > /dev/null
	@git diff --quiet -- Tests/ProtocolTests/Fixtures || \
		{ git diff --stat -- Tests/ProtocolTests/Fixtures; echo "fixtures differ from what the independent tools produce"; exit 1; }
	@echo "fixtures: identical to what python-escpos 3.1, pymodbus 3.8.6 and mbpoll produce"

clean:
	rm -rf .build var
