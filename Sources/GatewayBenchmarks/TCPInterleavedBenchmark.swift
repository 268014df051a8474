import Foundation

/// `tcp-vs-libmodbus --interleave-ms N --gatewayd PATH`: the same comparison as the rounds, with both clients running
/// at once and taking turns on the server, N ms each (the one not in its turn held with SIGSTOP), so that both see
/// the same machine. On a virtual machine the host moves a client's rate by a quarter from one 10 s round to the
/// next; turns of a few hundred milliseconds spread that over both. The gateway here is the daemon as shipped
/// (`gatewayd run`), polling 32 pads on one connection as fast as it can, one request in flight.
extension TCPThroughputBenchmark {
    private struct Tally {
        var transactions = 0
        var seconds = 0.0
        var cpuSeconds = 0.0
        /// Each turn's rate, for the spread.
        var rates: [Double] = []
    }

    static func interleaved(
        baseline: String, gatewayd: String, server: ServerChild, port: Int, units: Int, seconds: Double,
        warmup: Double, turn: Duration
    ) async throws {
        let folder = try BenchFolder("tcp-interleaved-c")
        defer { folder.remove() }
        // Longer than the warm-up and all its turns: it is ended below.
        let loop = try LoggedChild(
            baseline, ["127.0.0.1", "\(port)", "\(units)", "\(Int(seconds * 2 + warmup + 60))"],
            log: folder.file("out"))
        defer { kill(loop.pid, SIGKILL) }
        let daemon = try RunningDaemon(
            name: "tcp-interleaved", gatewayd: gatewayd,
            buses: [
                "{id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), response-timeout-ms: 1000, "
                    + "poll-interval-ms: 10}"
            ],
            devices: (1...units).map {
                String(format: "{id: pad-%02d, profile: modbus-evaluator-3key, bus: lan-1, address: %d, window: \"%d\"}", $0, $0, $0)
            },
            profiles: { try BenchPaths.fastPollingProfiles(in: $0) })
        let clients: [(name: String, child: LoggedChild)] = [
            ("libmodbus C loop", loop), ("gateway (gatewayd)", daemon.child),
        ]
        var tallies = [Tally(), Tally()]
        let turns = max(2, Int((seconds * 2 / turn.inSeconds).rounded()))
        let steal = StealMeter()
        do {
            // Both warm up at once, then wait for their turns.
            try await daemon.settle(seconds: warmup)
            for client in clients {
                guard client.child.process.isRunning else {
                    throw BusBenchmarkError("\(client.name) ended: \(client.child.log.suffix(2000))")
                }
                kill(client.child.pid, SIGSTOP)
            }
            for number in 0..<turns {
                let client = number % 2
                let child = clients[client].child
                let answeredBefore = try await server.answered()
                let cpuBefore = ProcessSample.of(child.pid)?.cpuSeconds ?? 0
                let started = ContinuousClock.now
                kill(child.pid, SIGCONT)
                try await Task.sleep(for: turn)
                kill(child.pid, SIGSTOP)
                let elapsed = (ContinuousClock.now - started).inSeconds
                let answered = try await server.answered() - answeredBefore
                guard child.process.isRunning else {
                    throw BusBenchmarkError("\(clients[client].name) ended: \(child.log.suffix(2000))")
                }
                tallies[client].transactions += answered
                tallies[client].seconds += elapsed
                tallies[client].cpuSeconds += (ProcessSample.of(child.pid)?.cpuSeconds ?? 0) - cpuBefore
                tallies[client].rates.append(Double(answered) / elapsed)
            }
        } catch {
            kill(daemon.child.pid, SIGCONT)
            await daemon.stop()
            throw error
        }
        let stealPercent = steal.percent
        kill(daemon.child.pid, SIGCONT)
        await daemon.stop()
        for (client, tally) in zip(clients, tallies) where tally.transactions == 0 {
            throw BusBenchmarkError(
                "\(client.name) had no answer in any of its turns: \(client.child.log.suffix(2000))")
        }
        print(
            "tcp-vs-libmodbus, interleaved: \(units) unit ids behind one loopback server, each client on its own "
                + "connection, \(turns) turns of \(fixed(turn.inSeconds * 1000, 0)) ms in turn; clients on CPUs "
                + "\(allowedCPUs(0)), server on CPUs \(allowedCPUs(server.process.processIdentifier)); steal "
                + "\(fixed(stealPercent, 1)) %; load \(loadAverage())")
        func quartiles(_ rates: [Double]) -> String {
            let sorted = rates.sorted()
            return "\(fixed(sorted[sorted.count / 4], 0))–\(fixed(sorted[sorted.count * 3 / 4], 0))"
        }
        printTable(
            ["client", "transactions/s", "middle half of its turns", "client CPU µs/txn"],
            zip(clients, tallies).map { client, tally in
                [
                    client.name, fixed(Double(tally.transactions) / tally.seconds, 0), quartiles(tally.rates),
                    fixed(tally.cpuSeconds / Double(max(1, tally.transactions)) * 1e6, 1),
                ]
            })
        let rate = tallies.map { Double($0.transactions) / $0.seconds }
        // Each gateway turn against the C loop's turns either side of it.
        let pairRatios = (0..<tallies[1].rates.count).map { index in
            let neighbours = tallies[0].rates[index..<min(index + 2, tallies[0].rates.count)]
            return tallies[1].rates[index] / (neighbours.reduce(0, +) / Double(neighbours.count))
        }.sorted()
        let ratio = rate[1] / rate[0]
        printTable(
            ["figure", "value"],
            [
                ["gateway / C loop, all turns", fixed(ratio, 3)],
                [
                    "gateway / C loop, median of a turn against the turns beside it",
                    fixed(pairRatios[pairRatios.count / 2], 3),
                ],
                ["target >= 0.90", verdict(ratio >= 0.90)],
            ])
    }
}
