/// Opens a serial line (raw, or Modbus RTU) for a bus whose engine runs on a thread of its own.
public struct SerialLinkOpener: LinkOpener {
    public let settings: SerialSettings
    public let executor: any SerialExecutor
    private let clock: any BusClock

    /// An opener for `settings`; `label` names the bus's thread.
    public init(settings: SerialSettings, clock: any BusClock, label: String) {
        self.settings = settings
        self.clock = clock
        executor = BusExecutor(label: label)
    }

    public var endpoint: String { settings.port }

    public nonisolated(nonsending) func open() async throws(GatewayError) -> any BusLink {
        // Another program reading the line takes answers meant for the gateway (from an installer's trial: a
        // forgotten script on the port, and the timeouts put down to the wiring). Tried again as a port that cannot be
        // opened is.
        let holders = PortHolder.of(settings.port)
        if !holders.isEmpty {
            throw GatewayError(.portUnavailable, """
                \(settings.port) is open in \(holders.map(\.description).joined(separator: ", ")) too: two programs on \
                one line take each other's answers; close it
                """)
        }
        return SerialLink(line: try SerialLine(settings: settings), clock: clock)
    }
}

/// A serial line as a bus link. Its reads block in `poll(2)`: the engine runs on the bus's own thread, and
/// `nonisolated(nonsending)` keeps the call there.
final class SerialLink: BusLink {
    private let line: SerialLine
    private let clock: any BusClock

    init(line: SerialLine, clock: any BusClock) {
        self.line = line
        self.clock = clock
    }

    var endpoint: String { line.path }

    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws(GatewayError) {
        try line.write(bytes)
    }

    nonisolated(nonsending) func read(until deadline: Duration) async throws(GatewayError) -> [UInt8] {
        try line.read(timeout: max(.zero, deadline - clock.now))
    }

    func discardInput() { line.discardInput() }

    func close() { line.close() }

    func wake() { line.wake() }

    var readsBlock: Bool { true }
}
