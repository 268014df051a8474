# The two commands: `make demo` runs the simulated demo hall, `make test` runs the whole suite.
# Both install what is missing first (Debian packages through apt-get, test tools through pip).
SHELL := /bin/bash
APT_PACKAGES := pkg-config libsqlite3-dev libmodbus-dev libserialport-dev libmosquitto-dev mbpoll socat
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT_BUILD_FLAGS ?=

.PHONY: all deps python-deps build demo test clean

all: build

deps:
	@missing=$$(for package in $(APT_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

python-deps:
	@python3 -c 'import cloudevents, sys; sys.exit(cloudevents.__version__ != "2.2.0")' 2>/dev/null || \
		python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-test.txt

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

demo: build
	.build/debug/gatewayd run

test: deps python-deps
	swift build --build-tests $(SWIFT_BUILD_FLAGS)
	swift test --skip-build $(SWIFT_BUILD_FLAGS)

clean:
	rm -rf .build var
