import Protocols

/// One entry per protocol family.
func allBenchmarks() -> [DecodeBenchmark] {
    escPosBenchmarks() + onbonBenchmarks() + rs485Benchmarks() + modbusBenchmarks()
}
