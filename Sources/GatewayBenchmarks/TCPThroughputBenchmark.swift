import DeviceGateway
import Foundation

/// Polls per second on one Modbus TCP connection: the gateway's bus (32 pads, poll interval 0) against a plain C loop
/// of libmodbus's `modbus_read_registers` (`bench/modbus_tcp_loop.c`), both against the same server in a process of
/// its own, in alternating rounds so that both see the same machine.
///
/// Where the scheduler puts client and server changes the figures several-fold on a virtual machine (a wake-up on
/// the other core costs far more than a switch on the same one), so `bench/bus.sh` pins them: this process (and the
/// C loop it starts) with `taskset -c 0`, the server with `--server-cpu 1`.
///
/// The gateway runs as shipped (one request in flight, like the C loop) and, with `--requests-in-flight N` above 1,
/// also with that many polls in flight on the connection (`requests-in-flight: N` on its bus).
///
/// With `--interleave-ms N`, both clients instead run at once and take turns of N ms (`interleaved`), `--seconds`
/// each in all.
///
///     GatewayBenchmarks tcp-vs-libmodbus --baseline PATH [--units 32] [--seconds 10] [--rounds 2] [--warmup 2]
///                                        [--server-cpu N] [--requests-in-flight N]
///                                        [--interleave-ms N [--gatewayd PATH]]
enum TCPThroughputBenchmark {
    private struct Round {
        var client: String
        var rate: Double
        /// CPU per transaction, in microseconds, of the client and of the server.
        var clientMicroseconds: Double
        var serverMicroseconds: Double
        /// CPU time the hypervisor gave to other guests during the round, in percent.
        var steal: Double
    }

    static func run(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "tcp-vs-libmodbus",
            known: [
                "--baseline", "--units", "--seconds", "--rounds", "--warmup", "--server-cpu", "--requests-in-flight",
                "--interleave-ms", "--gatewayd",
            ])
        guard let baseline = options.string("--baseline") else {
            print("tcp-vs-libmodbus: --baseline PATH (bench/modbus_tcp_loop.c, built by bench/bus.sh) is required")
            exit(2)
        }
        let units = options.int("--units", 32)
        let seconds = options.double("--seconds", 10)
        let warmup = options.double("--warmup", 2)
        let serverCPU = options.string("--server-cpu").flatMap { Int($0) }
        let inFlight = options.int("--requests-in-flight", 1)
        let server = try await ServerChild(["--transport", "tcp", "--units", "\(units)"], cpu: serverCPU)
        defer { server.stop() }
        let port = try server.port
        if let turn = options.string("--interleave-ms").flatMap({ Int($0) }) {
            try await interleaved(
                baseline: baseline, gatewayd: options.string("--gatewayd") ?? BenchPaths.gatewayd, server: server,
                port: port, units: units, seconds: seconds, warmup: warmup, turn: .milliseconds(max(50, turn)))
            return
        }
        var rounds: [Round] = []
        for _ in 0..<max(1, options.int("--rounds", 2)) {
            rounds.append(try await libmodbus(baseline, port: port, units: units, seconds: seconds, server: server))
            rounds.append(try await gateway(port: port, units: units, seconds: seconds, warmup: warmup, server: server))
            if inFlight > 1 {
                rounds.append(try await gateway(
                    port: port, units: units, seconds: seconds, warmup: warmup, server: server, inFlight: inFlight))
            }
        }
        print(
            "tcp-vs-libmodbus: \(units) unit ids behind one loopback server (its own process), one connection, "
                + "\(fixed(seconds, 0)) s a round; client on CPUs \(allowedCPUs(0)), server on CPUs "
                + "\(allowedCPUs(server.process.processIdentifier)); load \(loadAverage())")
        printTable(
            ["client", "transactions/s", "client CPU µs/txn", "server CPU µs/txn", "steal %"],
            rounds.map {
                [
                    $0.client, fixed($0.rate, 0), fixed($0.clientMicroseconds, 1), fixed($0.serverMicroseconds, 1),
                    fixed($0.steal, 1),
                ]
            })
        func best(_ client: String) -> Double { rounds.filter { $0.client == client }.map(\.rate).max() ?? 0 }
        func median(_ client: String) -> Double {
            let rates = rounds.filter { $0.client == client }.map(\.rate).sorted()
            return rates.isEmpty ? 0 : rates[rates.count / 2]
        }
        let cLoop = "libmodbus C loop"
        var figures: [[String]] = [["\(cLoop), best round (polls/s)", fixed(best(cLoop), 0)]]
        for client in Set(rounds.map(\.client)).subtracting([cLoop]).sorted() {
            let ratio = best(client) / max(1, best(cLoop))
            figures += [
                ["\(client), best round (polls/s)", fixed(best(client), 0)],
                ["\(client): ratio, best rounds", fixed(ratio, 3)],
                ["\(client): ratio, median rounds", fixed(median(client) / max(1, median(cLoop)), 3)],
                ["\(client): target >= 0.90", verdict(ratio >= 0.90)],
            ]
        }
        printTable(["figure", "value"], figures)
    }

    private static func libmodbus(_ path: String, port: Int, units: Int, seconds: Double, server: ServerChild)
        async throws
        -> Round
    {
        let folder = try BenchFolder("tcp-libmodbus")
        defer { folder.remove() }
        let serverBefore = server.cpuSeconds
        let answeredBefore = try await server.answered()
        let steal = StealMeter()
        let child = try LoggedChild(path, ["127.0.0.1", "\(port)", "\(units)", "\(seconds)"], log: folder.file("out"))
        await child.wait(timeout: .seconds(seconds + 30))
        let answered = try await server.answered() - answeredBefore
        let serverCPU = server.cpuSeconds - serverBefore
        // "transactions N failed F seconds S cpu C"
        let words = child.log.split(whereSeparator: \.isWhitespace)
        func value(_ key: String) -> Double? {
            words.firstIndex(of: Substring(key)).flatMap {
                words.indices.contains($0 + 1) ? Double(words[$0 + 1]) : nil
            }
        }
        guard let transactions = value("transactions"), let elapsed = value("seconds"), let cpu = value("cpu"),
            transactions > 0
        else { throw BusBenchmarkError("the libmodbus loop printed: \(child.log)") }
        if let failed = value("failed"), failed > 0 {
            print("tcp-vs-libmodbus: the C loop saw \(Int(failed)) failed reads")
        }
        return Round(
            client: "libmodbus C loop", rate: transactions / elapsed, clientMicroseconds: cpu / transactions * 1e6,
            serverMicroseconds: serverCPU / Double(max(1, answered)) * 1e6, steal: steal.percent)
    }

    private static func gateway(
        port: Int, units: Int, seconds: Double, warmup: Double, server: ServerChild, inFlight: Int = 1
    ) async throws -> Round {
        let folder = try BenchFolder("tcp-gateway")
        defer { folder.remove() }
        let configuration = benchConfiguration(
            folder: folder, profiles: try BenchPaths.fastPollingProfiles(in: folder),
            buses: [
                "{id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), response-timeout-ms: 300, "
                    + "poll-interval-ms: 10\(inFlight > 1 ? ", requests-in-flight: \(inFlight)" : "")}"
            ],
            devices: (1...units).map {
                String(format: "{id: pad-%02d, profile: modbus-evaluator-3key, bus: lan-1, address: %d, window: \"%d\"}", $0, $0, $0)
            })
        let gateway = try InProcessGateway(configuration: configuration, folder: folder)
        try await Task.sleep(for: .seconds(warmup))
        let answeredBefore = try await server.answered()
        let timeoutsBefore = await gateway.totals().timeouts
        let serverBefore = server.cpuSeconds
        let cpuBefore = ProcessSample.of(0)?.cpuSeconds ?? 0
        let steal = StealMeter()
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let answered = try await server.answered() - answeredBefore
        let timeouts = await gateway.totals().timeouts - timeoutsBefore
        if timeouts > 0 { print("tcp-vs-libmodbus: the gateway counted \(timeouts) timeouts") }
        let elapsed = (ContinuousClock.now - started).inSeconds
        let cpu = (ProcessSample.of(0)?.cpuSeconds ?? 0) - cpuBefore
        let serverCPU = server.cpuSeconds - serverBefore
        await gateway.shutdown()
        return Round(
            client: inFlight > 1 ? "gateway, \(inFlight) in flight" : "gateway", rate: Double(answered) / elapsed,
            clientMicroseconds: cpu / Double(max(1, answered)) * 1e6,
            serverMicroseconds: serverCPU / Double(max(1, answered)) * 1e6, steal: steal.percent)
    }
}
