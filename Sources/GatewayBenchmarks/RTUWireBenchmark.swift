import DeviceGateway
import Foundation
import MockDevices
import Synchronization

/// The Modbus RTU bus against the wire's own limit: 32 evaluator pads on one paced pseudo-terminal line (every byte
/// takes its wire time, each pad answers 3.5 characters after the request), polled as fast as the line allows by a
/// gateway built from a configuration as `gatewayd run` builds it.
///
///     GatewayBenchmarks rtu-wire [--seconds 30] [--warmup 6] [--baud 9600] [--pads 32] [--timeout-ms 300]
///     GatewayBenchmarks rtu-call-latency [--calls 200] [--warmup 6] [--baud 9600] [--pads 32] [--max-pause-ms 250]
enum RTUWireBenchmark {
    /// Poll request: address, function, start, count, CRC.
    static let requestCharacters = 8
    /// Poll answer for 32 registers: address, function, byte count, 64 bytes, CRC.
    static func answerCharacters(registers: Int) -> Int { 5 + 2 * registers }
    /// The board's first command frame (function 16, its 32 text registers): address, function, start, count,
    /// byte count, 64 bytes, CRC.
    static let textWriteCharacters = 9 + 2 * 32

    static func run(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "rtu-wire",
            known: ["--seconds", "--warmup", "--baud", "--pads", "--timeout-ms"])
        let seconds = options.double("--seconds", 30)
        let pacing = WirePacing(baud: options.int("--baud", 9600))
        let padCount = options.int("--pads", 32)
        let line = try PacedLine(
            pads: padCount, board: false, pacing: pacing, timeoutMs: options.int("--timeout-ms", 300))
        defer { line.remove() }
        try await Task.sleep(for: .seconds(options.double("--warmup", 6)))
        let before = line.server.requestsAnswered
        let countersBefore = await line.gateway.totals()
        let steal = StealMeter()
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let answered = line.server.requestsAnswered - before
        let elapsed = (ContinuousClock.now - started).inSeconds
        let countersAfter = await line.gateway.totals()
        await line.gateway.shutdown()

        let answer = answerCharacters(registers: MockModbusEvaluator.Register.count)
        let perTransaction = pacing.wireTime(characters: requestCharacters + answer) + pacing.frameGap * 2
        let limit = 1 / perTransaction.inSeconds
        let measured = Double(answered) / elapsed
        print(
            "rtu-wire: \(padCount) pads on one paced pseudo-terminal at \(pacing), poll interval 0, "
                + "\(fixed(elapsed, 0)) s after warm-up; load \(loadAverage()), steal \(fixed(steal.percent, 1)) %")
        printTable(
            ["figure", "value"],
            [
                ["request (characters)", "\(requestCharacters)"],
                ["answer (characters)", "\(answer)"],
                ["frame gap (ms)", fixed(pacing.frameGap.inMilliseconds, 3)],
                ["character time (ms)", fixed(pacing.characterTime.inMilliseconds, 4)],
                ["wire time per transaction (ms)", fixed(perTransaction.inMilliseconds, 2)],
                ["limit (transactions/s)", fixed(limit, 2)],
                ["answered by the pads (server count)", "\(answered)"],
                ["answered, the gateway's counters", "\(countersAfter.transactions - countersBefore.transactions)"],
                ["timeouts, the gateway's counters", "\(countersAfter.timeouts - countersBefore.timeouts)"],
                ["measured (transactions/s)", fixed(measured, 2)],
                ["fraction of the limit", fixed(measured / limit, 3)],
                ["target >= 0.90", verdict(measured / limit >= 0.90)],
            ])
    }

    static func callLatency(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "rtu-call-latency",
            known: ["--calls", "--warmup", "--baud", "--pads", "--max-pause-ms", "--timeout-ms"])
        let calls = options.int("--calls", 200)
        let pacing = WirePacing(baud: options.int("--baud", 9600))
        let padCount = options.int("--pads", 32)
        let maximumPause = options.int("--max-pause-ms", 250)
        let line = try PacedLine(
            pads: padCount, board: true, pacing: pacing, timeoutMs: options.int("--timeout-ms", 300))
        defer { line.remove() }
        try await Task.sleep(for: .seconds(options.double("--warmup", 6)))
        var latencies: [Double] = []
        // From when the line was free for the call (the answer in flight arrived, then the frame gap) until its frame
        // started: the gateway's own delay, and the mock's in reading the frame.
        var afterLineFree: [Double] = []
        var completions: [Double] = []
        let command = pacing.wireTime(characters: textWriteCharacters)
        var failures = 0
        let steal = StealMeter()
        for number in 0..<calls {
            // A random moment in the cycle of polls.
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...maximumPause)))
            line.board.arm()
            let called = ContinuousClock.now
            do {
                try await line.gateway.gateway.send(
                    .call(ticket: String(format: "A%03d", number % 1000), window: "1"),
                    to: "board-1")
            } catch {
                failures += 1
                print("rtu-call-latency: call \(number) failed: \(error)")
                continue
            }
            completions.append((ContinuousClock.now - called).inMilliseconds)
            guard let written = line.board.firstWrite else {
                failures += 1
                continue
            }
            latencies.append((written - called).inMilliseconds)
            if let answered = line.board.lastAnswerBeforeFirstWrite {
                afterLineFree.append((written - command - max(called, answered + pacing.frameGap)).inMilliseconds)
            }
        }
        await line.gateway.shutdown()

        let answer = answerCharacters(registers: MockModbusEvaluator.Register.count)
        let inFlight = pacing.wireTime(characters: requestCharacters + answer) + pacing.frameGap * 2
        let target = (inFlight + command).inMilliseconds
        latencies.sort()
        afterLineFree.sort()
        completions.sort()
        func quantile(_ values: [Double], _ fraction: Double) -> Double {
            values.isEmpty
                ? .nan : values[min(values.count - 1, Int((Double(values.count) * fraction).rounded(.up)) - 1)]
        }
        print(
            "rtu-call-latency: \(latencies.count) calls (\(failures) failed) to a window board among \(padCount) pads "
                + "polled as fast as the line allows, \(pacing), pauses of 0-\(maximumPause) ms; "
                + "load \(loadAverage()), steal \(fixed(steal.percent, 1)) %")
        print(
            "from Gateway.send(.call) until the board's first write frame (\(textWriteCharacters) characters) has "
                + "arrived at the board:")
        printTable(
            ["figure", "ms"],
            [
                ["the poll in flight (request + answer + 2 gaps)", fixed(inFlight.inMilliseconds, 1)],
                ["the command frame's wire time", fixed(command.inMilliseconds, 1)],
                ["target (the two together)", fixed(target, 1)],
                // The engine picks its next request, then waits out the frame gap before sending it: a call that comes
                // during that wait waits for the whole poll, one gap more than the target allows.
                [
                    "worst case when the next request is chosen before the gap",
                    fixed(target + pacing.frameGap.inMilliseconds, 1),
                ],
                ["minimum", fixed(latencies.first ?? .nan, 1)],
                ["p50", fixed(quantile(latencies, 0.5), 1)],
                ["p99", fixed(quantile(latencies, 0.99), 1)],
                ["max", fixed(latencies.last ?? .nan, 1)],
                ["whole command (3 writes answered), p50", fixed(quantile(completions, 0.5), 1)],
                // The measured latency less the line's real busy time: what the gateway (and the mock reading the
                // frame) added, apart from a paced answer that a held-up transmitter thread stretched.
                ["line free to command frame started, p50", fixed(quantile(afterLineFree, 0.5), 2)],
                ["line free to command frame started, p99", fixed(quantile(afterLineFree, 0.99), 2)],
                ["line free to command frame started, max", fixed(afterLineFree.last ?? .nan, 2)],
                ["target: max <= target", verdict((latencies.last ?? .infinity) <= target)],
                ["target: p99 <= target", verdict(quantile(latencies, 0.99) <= target)],
            ])
    }
}

/// A paced RTU line with pads at 1…n (and a window board after them), and a gateway polling it.
private struct PacedLine {
    let server: MockModbusServer
    let board: StampedBoard
    let gateway: InProcessGateway
    let folder: BenchFolder

    init(pads: Int, board withBoard: Bool, pacing: WirePacing, timeoutMs: Int) throws {
        var units: [Int: any MockModbusUnit] = [:]
        for address in 1...pads {
            units[address] = MockModbusEvaluator(staffId: String(format: "%04d", 1000 + address))
        }
        board = StampedBoard()
        if withBoard { units[pads + 1] = board }
        let server = try MockModbusServer.rtu(units: units, pacing: pacing)
        self.server = server
        let lastAnswer: @Sendable () -> ContinuousClock.Instant? = { [weak server] in server?.lastAnswerArrived }
        board.lastAnswerOnLine.withLock { $0 = lastAnswer }
        guard case .rtu(let path) = server.endpoint else { throw BusBenchmarkError("not an RTU server") }
        folder = try BenchFolder("rtu-wire")
        var devices = (1...pads).map {
            String(format: "{id: pad-%02d, profile: modbus-evaluator-3key, bus: rs485-1, address: %d, window: \"%d\"}", $0, $0, $0)
        }
        if withBoard {
            devices.append(
                "{id: board-1, profile: modbus-window-board, bus: rs485-1, address: \(pads + 1), window: \"1\"}")
        }
        // The bus's own interval cannot go below 10 ms: one poll of a pad takes 87.5 ms of wire at 9600, so the
        // line is never idle; the pads' profile asks for 0.
        let configuration = benchConfiguration(
            folder: folder, profiles: try BenchPaths.fastPollingProfiles(in: folder),
            buses: [
                "{id: rs485-1, transport: modbus-rtu, port: \(path), baud: \(pacing.baud), parity: none, stop-bits: 1, "
                    + "response-timeout-ms: \(timeoutMs), poll-interval-ms: 10}"
            ],
            devices: devices)
        gateway = try InProcessGateway(configuration: configuration, folder: folder)
    }

    func remove() {
        server.stop()
        folder.remove()
    }
}
