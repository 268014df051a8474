import Protocols

/// One entry per protocol family.
func allBenchmarks() -> [DecodeBenchmark] {
    modbusBenchmarks() + onbonBenchmarks() + rs485Benchmarks()
}
