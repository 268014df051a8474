import DeviceGateway
import Foundation
import Logging
import MockDevices
import Protocols
import Synchronization

/// The bus engine's own CPU for a Modbus TCP poll: the engine and its driver on their thread, against a peer in memory
/// that answers each request at once (no system call, no other process), so what is measured is what the gateway
/// spends beyond the socket's read and write. That is what separates it from the C loop in `tcp-vs-libmodbus`,
/// where the system calls and the server are the same for both.
///
///     GatewayBenchmarks engine-cpu [--units 32] [--seconds 5] [--rounds 3]
enum EngineCPUBenchmark {
    static func run(_ arguments: [String]) async throws {
        let options = BenchOptions(arguments, command: "engine-cpu", known: ["--units", "--seconds", "--rounds"])
        let units = options.int("--units", 32)
        guard (1...247).contains(units) else {
            print("engine-cpu: --units takes a Modbus unit count, 1 to 247")
            exit(2)
        }
        let seconds = options.double("--seconds", 5)
        var rows: [[String]] = []
        for round in 1...max(1, options.int("--rounds", 3)) {
            let (rate, microseconds) = try await measure(units: units, seconds: seconds)
            rows.append(["\(round)", fixed(rate, 0), fixed(microseconds, 2)])
        }
        print("engine-cpu: \(units) Modbus TCP pads behind a peer in memory that answers at once, "
              + "\(fixed(seconds, 0)) s a round; load \(loadAverage())")
        printTable(["round", "polls/s", "CPU µs/poll"], rows)
    }

    private static func measure(units: Int, seconds: Double) async throws -> (rate: Double, microseconds: Double) {
        let folder = try BenchFolder("engine-cpu")
        defer { folder.remove() }
        guard case .modbusEvaluator(let profile) = try ProfileLibrary(directory: BenchPaths.profiles())
            .profile(named: "modbus-evaluator-3key")
        else { throw BusBenchmarkError("modbus-evaluator-3key is not a Modbus pad profile") }
        var logger = Logger(label: "engine-cpu") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: logger)
        let devices = (1...units).map {
            DeviceConfig(id: String(format: "pad-%02d", $0), profile: "modbus-evaluator-3key", bus: "lan-1",
                         address: $0, window: "\($0)")
        }
        let config = BusConfig(id: "lan-1", transport: .modbusTCP(host: "memory", port: 502),
                               responseTimeout: .milliseconds(300), pollInterval: .zero)
        let driver = ModbusDriver(members: devices.map { ($0, .pad(profile)) }, framing: .tcp, hallId: "bench",
                                  pollInterval: config.pollInterval, responseTimeout: config.responseTimeout)
        let bus = BusEngine(config: config, opener: InstantPeer(units: units), clock: SystemBusClock(),
                            timing: .instant, hallId: "bench", driver: driver, outbox: outbox, logger: logger,
                            onCommit: { _ in })
        let stop = StopSignal()
        let running = Task { await bus.run(until: stop) }
        // The first round of polls commits each pad's cursor; then nothing changes and nothing is committed.
        try await Task.sleep(for: .seconds(1))
        func transactions() async -> Int { await bus.deviceStates().reduce(0) { $0 + $1.counters.transactions } }
        let before = await transactions()
        let cpuBefore = ProcessSample.of(0)?.cpuSeconds ?? 0
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let polls = await transactions() - before
        let cpu = (ProcessSample.of(0)?.cpuSeconds ?? 0) - cpuBefore
        let elapsed = (ContinuousClock.now - started).inSeconds
        stop.stop()
        _ = await running.value
        guard polls > 0 else { throw BusBenchmarkError("engine-cpu: no poll was answered") }
        return (Double(polls) / elapsed, cpu / Double(polls) * 1e6)
    }
}

/// Modbus TCP pads in memory: a write is answered by the next read, with the reply a mock pad's registers give the
/// first read of its unit id, and the request's transaction id. Reads "block" (the engine runs on a thread of its own).
private final class InstantPeer: LinkOpener, BusLink, Sendable {
    let endpoint = "memory"
    let executor: any SerialExecutor = BusExecutor(label: "engine-cpu")
    private let pads: [UInt8: MockModbusEvaluator]
    private let state = Mutex<(replies: [UInt8: [UInt8]], waiting: [UInt8])>(([:], []))

    init(units: Int) {
        pads = Dictionary(uniqueKeysWithValues: (1...UInt8(units)).map {
            ($0, MockModbusEvaluator(staffId: "S-\($0)", bootId: 0x1000 + UInt32($0)))
        })
    }

    nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink { self }

    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {
        guard bytes.count > ModbusTCPFrame.headerLength else { return }
        let unit = bytes[6]
        state.withLock { state in
            var reply = state.replies[unit] ?? {
                var decoder = ModbusTCPDecoder(role: .server)
                guard let frame = decoder.decode(bytes).first, let pad = pads[unit],
                      case .request(.readHoldingRegisters(let start, let count)) = frame.message
                else { return [] }
                let values = Array(pad.registers[Int(start)..<Int(start + count)])
                return (try? ModbusTCPFrame(transactionId: 0, unitId: unit, response: .readHoldingRegisters(values: values))
                    .encode()) ?? []
            }()
            if state.replies[unit] == nil { state.replies[unit] = reply }
            guard !reply.isEmpty else { return }
            reply[0] = bytes[0]
            reply[1] = bytes[1]
            state.waiting += reply
        }
    }

    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        state.withLock { state in
            defer { state.waiting.removeAll(keepingCapacity: true) }
            return state.waiting
        }
    }

    func discardInput() { state.withLock { $0.waiting.removeAll() } }
    func close() {}
    func wake() {}
    var readsBlock: Bool { true }
}
