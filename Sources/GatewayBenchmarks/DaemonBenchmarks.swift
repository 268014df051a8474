import Foundation

/// The real daemon (`gatewayd run --config FILE`, release build) polling simulated pads served by another process:
/// its CPU and threads with hundreds of Modbus TCP connections, and its resident memory.
///
///     GatewayBenchmarks tcp-scale [--devices 50,250,500] [--seconds 60] [--warmup 10] [--interval-ms 1000]
///                                 [--gatewayd PATH]
///     GatewayBenchmarks rss [--pads 50] [--layouts tcp-50,tcp-1,rtu-2] [--seconds 60] [--window 60] [--floor PATH]
///                           [--env K=V] [--gatewayd PATH] [--top 12]
enum DaemonBenchmarks {
    // MARK: tcp-scale

    static func scale(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "tcp-scale",
            known: ["--devices", "--seconds", "--warmup", "--interval-ms", "--gatewayd"])
        let seconds = options.double("--seconds", 60)
        let interval = options.int("--interval-ms", 1000)
        var rows: [[String]] = []
        var shares: [Double] = []
        var threadCounts: [Int] = []
        var names: [String] = []
        var loopThreads: [Int] = []
        for devices in options.ints("--devices", [50, 250, 500]) {
            let server = try await ServerChild(["--transport", "tcp", "--units", "1"])
            defer { server.stop() }
            let port = try server.port
            // One bus per pad: each its own TCP connection, as pads with an Ethernet port of their own are wired.
            let daemon = try RunningDaemon(
                name: "tcp-scale", gatewayd: options.string("--gatewayd") ?? BenchPaths.gatewayd,
                buses: (1...devices).map {
                    "{id: lan-\($0), transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port), "
                        + "response-timeout-ms: 300, poll-interval-ms: \(interval)}"
                },
                devices: (1...devices).map {
                    "{id: pad-\($0), profile: modbus-evaluator-3key, bus: lan-\($0), address: 1, window: \"\($0)\"}"
                })
            try await daemon.settle(seconds: options.double("--warmup", 10))
            let before = try daemon.sample()
            let answeredBefore = try await server.answered()
            let steal = StealMeter()
            let started = ContinuousClock.now
            var fewest = before.threads
            var most = before.threads
            while ContinuousClock.now < started + .seconds(seconds) {
                try await Task.sleep(for: .seconds(min(5, seconds)))
                let sample = try daemon.sample()
                fewest = min(fewest, sample.threads)
                most = max(most, sample.threads)
            }
            let after = try daemon.sample()
            names.append("\(devices): \(threadNames(daemon.child.pid))")
            loopThreads.append(
                threadNames(daemon.child.pid).split(separator: ", ").filter { $0.contains("NIO-ELT") }.count)
            let answered = try await server.answered() - answeredBefore
            let elapsed = (ContinuousClock.now - started).inSeconds
            await daemon.stop()
            let share = (after.cpuSeconds - before.cpuSeconds) / elapsed * 100
            shares.append(share)
            threadCounts.append(most)
            rows.append([
                "\(devices)", fixed(Double(answered) / elapsed, 1), fixed(share, 2),
                fewest == most ? "\(most)" : "\(fewest)-\(most)", fixed(after.residentMegabytes, 1),
                fixed(steal.percent, 1),
            ])
        }
        print(
            "tcp-scale: gatewayd (release) polling N pads on N Modbus TCP connections every \(interval) ms, 32 "
                + "registers each, \(fixed(seconds, 0)) s after warm-up; server in its own process; "
                + "load \(loadAverage())"
        )
        printTable(["connections", "polls/s", "CPU % of one core", "threads", "RSS MB", "steal %"], rows)
        print("threads by name at the end of each run:")
        for line in names { print("  " + line) }
        // Flat: no thread per connection. The one event loop serves every connection; Dispatch's workers (SQLite's
        // queues under GRDB) come and go with bursts of work, by ten or so, whatever the count of connections. A thread
        // per bus (the design this replaced: 284 threads at 500 connections) would add one per connection.
        let counts = options.ints("--devices", [50, 250, 500])
        let added = (counts.max() ?? 0) - (counts.min() ?? 0)
        let loops = Set(loopThreads)
        let flat = loops.count == 1 && ((threadCounts.last ?? 0) - (threadCounts.first ?? 0)) * 10 < max(added, 10)
        print(
            "target: <= 10 % of one core at the largest count: \(verdict((shares.last ?? 100) <= 10)); "
                + "threads flat (the same event-loop threads at every count, and less than 1 thread more per 10 "
                + "connections added): \(verdict(flat))")
    }

    // MARK: rss

    static func memory(_ arguments: [String]) async throws {
        let options = BenchOptions(
            arguments, command: "rss",
            known: [
                "--pads", "--layouts", "--seconds", "--window", "--floor", "--env", "--gatewayd",
                "--top",
            ])
        let pads = options.int("--pads", 50)
        let seconds = options.double("--seconds", 60)
        // A whole minute: the gateway's once-a-minute work (the outbox's prune and reserve, the hall day's minute) is
        // part of its working set, and a shorter window took it in or not by chance (10 s: 9.7 or 34.1 MB).
        let window = options.double("--window", 60)
        var environment: [String: String] = [:]
        for pair in options.strings("--env") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { environment[parts[0]] = parts[1] }
        }
        let layouts = (options.string("--layouts") ?? "tcp-50,tcp-1,rtu-2").split(separator: ",").map(String.init)
        var rows: [[String]] = []
        var breakdowns: [(String, MemoryBreakdown)] = []
        for layout in layouts {
            let server: ServerChild
            var buses: [String] = []
            var devices: [String] = []
            switch layout {
            case "tcp-1":
                server = try await ServerChild(["--transport", "tcp", "--units", "\(pads)"])
                let port = try server.port
                buses = ["{id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port)}"]
                devices = (1...pads).map {
                    "{id: pad-\($0), profile: modbus-evaluator-3key, bus: lan-1, address: \($0), window: \"\($0)\"}"
                }
            case "tcp-\(pads)":
                server = try await ServerChild(["--transport", "tcp", "--units", "1"])
                let port = try server.port
                buses = (1...pads).map { "{id: lan-\($0), transport: modbus-tcp, host: 127.0.0.1, tcp-port: \(port)}" }
                devices = (1...pads).map {
                    "{id: pad-\($0), profile: modbus-evaluator-3key, bus: lan-\($0), address: 1, window: \"\($0)\"}"
                }
            case let name where name.hasPrefix("rtu-"):
                let lines = Int(name.dropFirst(4)) ?? 2
                server = try await ServerChild(["--transport", "rtu", "--units", "\(pads)", "--lines", "\(lines)"])
                let perLine = (pads + lines - 1) / lines
                for (index, path) in server.paths.enumerated() {
                    buses.append("{id: rs485-\(index + 1), transport: modbus-rtu, port: \(path), baud: 9600}")
                    let first = index * perLine + 1
                    for pad in first...min(pads, first + perLine - 1) {
                        devices.append(
                            "{id: pad-\(pad), profile: modbus-evaluator-3key, bus: rs485-\(index + 1), "
                                + "address: \(pad - index * perLine), window: \"\(pad)\"}")
                    }
                }
            default:
                print("rss: unknown layout \(layout) (tcp-\(pads), tcp-1, rtu-N)")
                exit(2)
            }
            defer { server.stop() }
            let daemon = try RunningDaemon(
                name: "rss", gatewayd: options.string("--gatewayd") ?? BenchPaths.gatewayd,
                buses: buses, devices: devices, environment: environment)
            try await daemon.settle(seconds: seconds)
            let sample = try daemon.sample()
            let answered = try await server.answered()
            // The working set: what the daemon touches in `window` seconds of polling, from now on. Start-up code and
            // pages mapped around each page fault stay resident, but the kernel may take them back under pressure.
            try "1".write(toFile: "/proc/\(daemon.child.pid)/clear_refs", atomically: false, encoding: .utf8)
            try await daemon.settle(seconds: window)
            let breakdown = MemoryBreakdown(pid: daemon.child.pid)
            await daemon.stop()
            rows.append(
                memoryRow(layout, buses: "\(buses.count)", polls: "\(answered)", sample)
                    + [fixed(breakdown.referencedMegabytes, 1)])
            breakdowns.append((layout, breakdown))
        }
        let settings =
            environment.isEmpty ? "" : " with " + environment.map { "\($0)=\($1)" }.sorted().joined(separator: " ")
        print(
            "rss: gatewayd (release)\(settings) polling \(pads) pads for \(fixed(seconds, 0)) s, devices in another "
                + "process; load \(loadAverage())")
        if let floor = options.string("--floor") {
            let folder = try BenchFolder("rss-floor")
            defer { folder.remove() }
            let child = try LoggedChild(floor, [], log: folder.file("out"), environment: environment)
            try await Task.sleep(for: .seconds(3))
            let sample = ProcessSample.of(child.pid)
            breakdowns.append(("Foundation floor", MemoryBreakdown(pid: child.pid)))
            kill(child.pid, SIGKILL)
            await child.wait()
            if let sample { rows.append(memoryRow("Foundation floor", buses: "-", polls: "-", sample) + ["-"]) }
        }
        printTable(
            [
                "layout", "buses", "polls", "VmRSS MB", "VmHWM MB", "RssAnon MB", "RssFile MB", "threads",
                "touched in \(fixed(window, 0)) s MB",
            ], rows)
        let top = options.int("--top", 12)
        for (layout, breakdown) in breakdowns where top > 0 {
            print("\nwhere the resident memory of layout \(layout) is (MB):")
            printTable(
                ["mapping", "size", "Rss", "anon", "touched"],
                breakdown.largest(top).map {
                    // The floor's accessed bits were never cleared: they say nothing of a working set.
                    [
                        $0.name, fixed($0.sizeKB / 1024, 1), fixed($0.rssKB / 1024, 2), fixed($0.anonymousKB / 1024, 2),
                        layout == "Foundation floor" ? "-" : fixed($0.referencedKB / 1024, 2),
                    ]
                })
        }
        let worst =
            rows.filter { $0[0].hasPrefix("tcp") || $0[0].hasPrefix("rtu") }.compactMap { Double($0[3]) }.max()
            ?? .infinity
        print("\ntarget: VmRSS <= 20 MB in every layout: \(verdict(worst <= 20))")
    }
}

private func memoryRow(_ layout: String, buses: String, polls: String, _ sample: ProcessSample) -> [String] {
    [
        layout, buses, polls, fixed(sample.residentMegabytes, 1), fixed(sample.peakResidentMegabytes, 1),
        fixed(sample.anonymousMegabytes, 1), fixed(sample.fileMegabytes, 1), "\(sample.threads)",
    ]
}

/// gatewayd running a generated configuration, its output in a log file.
struct RunningDaemon {
    let folder: BenchFolder
    let child: LoggedChild

    /// `profiles`: a directory of device profiles (nil: the project's own).
    init(name: String, gatewayd: String, buses: [String], devices: [String], environment: [String: String] = [:],
         profiles: ((BenchFolder) throws -> String)? = nil) throws
    {
        guard FileManager.default.isExecutableFile(atPath: gatewayd) else {
            throw BusBenchmarkError(
                "no gatewayd at \(gatewayd); build it: swift build -c release --scratch-path "
                    + ".build-release --product gatewayd")
        }
        folder = try BenchFolder(name)
        let configuration = benchConfiguration(
            folder: folder, profiles: try profiles?(folder) ?? BenchPaths.profiles(), buses: buses,
            devices: devices)
        try configuration.write(toFile: folder.file("hall.yaml"), atomically: true, encoding: .utf8)
        child = try LoggedChild(
            gatewayd, ["run", "--config", folder.file("hall.yaml"), "--log-level", "warning"],
            log: folder.file("gatewayd.log"), environment: environment)
    }

    /// Waits `seconds`, failing early if the daemon dies.
    func settle(seconds: Double) async throws {
        let until = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < until {
            guard child.process.isRunning else { throw BusBenchmarkError("gatewayd ended: \(child.log.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    func sample() throws -> ProcessSample {
        guard let sample = ProcessSample.of(child.pid) else {
            throw BusBenchmarkError("gatewayd ended: \(child.log.suffix(2000))")
        }
        return sample
    }

    func stop() async {
        await child.terminate()
        let log = child.log
        let errors = log.split(separator: "\n").filter { $0.contains("error") || $0.contains("critical") }
        if !errors.isEmpty { print("gatewayd logged \(errors.count) errors, the first: \(errors[0])") }
        folder.remove()
    }
}

/// Resident memory per mapping, from /proc/<pid>/smaps.
struct MemoryBreakdown {
    struct Mapping {
        var name: String
        var sizeKB: Double = 0
        var rssKB: Double = 0
        var anonymousKB: Double = 0
        /// Resident and accessed since the accessed bits were last cleared (`/proc/<pid>/clear_refs`).
        var referencedKB: Double = 0
    }

    private(set) var mappings: [Mapping] = []

    init(pid: Int32) {
        guard let text = readProcFile("/proc/\(pid)/smaps") else { return }
        var current: Mapping?
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = words.first else { continue }
            if first.contains("-"), !first.hasSuffix(":") {
                if let current { mappings.append(current) }
                let perms = words.count > 1 ? String(words[1]) : ""
                var name = words.count > 5 ? words[5...].joined(separator: " ") : ""
                if name.isEmpty {
                    name = "[anonymous \(perms)]"
                } else if name.hasPrefix("/") {
                    name = (name as NSString).lastPathComponent
                }
                current = Mapping(name: name)
                continue
            }
            let value = words.count > 1 ? Double(words[1]) ?? 0 : 0
            switch first {
            case "Size:": current?.sizeKB = value
            case "Rss:": current?.rssKB = value
            case "Anonymous:": current?.anonymousKB = value
            case "Referenced:": current?.referencedKB = value
            default: break
            }
        }
        if let current { mappings.append(current) }
    }

    /// Resident pages accessed since the bits were cleared, in MB.
    var referencedMegabytes: Double { mappings.reduce(0) { $0 + $1.referencedKB } / 1024 }

    /// The `count` files or kinds of mapping holding most: each file's mappings summed, the anonymous ones (malloc
    /// heap and arenas, thread stacks) summed apart, with how many there are.
    func largest(_ count: Int) -> [Mapping] {
        var merged: [String: Mapping] = [:]
        var anonymousCount = 0
        for mapping in mappings {
            var name = mapping.name
            if name.hasPrefix("[anonymous") {
                guard mapping.rssKB > 0 else { continue }
                anonymousCount += 1
                name = "[anonymous]"
            }
            var total = merged[name] ?? Mapping(name: name)
            total.sizeKB += mapping.sizeKB
            total.rssKB += mapping.rssKB
            total.anonymousKB += mapping.anonymousKB
            total.referencedKB += mapping.referencedKB
            merged[name] = total
        }
        merged["[anonymous]"]?.name = "[anonymous] (\(anonymousCount) resident mappings)"
        return merged.values.sorted { $0.rssKB > $1.rssKB }.prefix(count).map { $0 }
    }
}
