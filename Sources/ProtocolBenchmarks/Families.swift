import Protocols

/// One entry per protocol family.
func allBenchmarks() -> [DecodeBenchmark] {
    []
}
