# Sourced by the bench scripts: `build_release PRODUCT` builds it in release into .build-release (apart from the debug
# .build), printing only what failed.
scratch=.build-release

build_release() {
    local output
    if ! output=$(swift build -c release --scratch-path "$scratch" --product "$1" 2>&1); then
        echo "$output" | grep -E "error" >&2 || echo "$output" | tail -20 >&2
        exit 1
    fi
}
