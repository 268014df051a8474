// Forwarding, outbox and bus-engine benchmarks: `swift run -c release GatewayBenchmarks NAME`.
// The drain benchmarks need their store: run them under `scripts/test-services.sh` (docs/benchmarks.md);
// the bus-engine ones (rtu-wire … rss) are run together by `bench/bus.sh`.
import Foundation

let benchmarks: [String: @Sendable ([String]) async throws -> Void] = [
    "ingest": OutboxIngestBenchmark.run,
    "drain-postgres": PostgresDrainBenchmark.run,
    "drain-mqtt": MQTTDrainBenchmark.run,
    "drain-http": HTTPDrainBenchmark.run,
    "backlog-rss": BacklogMemoryBenchmark.run,
    "rtu-wire": RTUWireBenchmark.run,
    "rtu-call-latency": RTUWireBenchmark.callLatency,
    "api-call-latency": APICallBenchmark.run,
    "tcp-vs-libmodbus": TCPThroughputBenchmark.run,
    "engine-cpu": EngineCPUBenchmark.run,
    "tcp-scale": DaemonBenchmarks.scale,
    "rss": DaemonBenchmarks.memory,
    // The simulated pads of the benchmarks above, in a process of their own.
    "modbus-server": ModbusServerCommand.run,
]

let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, let benchmark = benchmarks[name] else {
    print("usage: GatewayBenchmarks \(benchmarks.keys.sorted().joined(separator: "|")) [options]")
    exit(2)
}
try await benchmark(Array(arguments.dropFirst()))
