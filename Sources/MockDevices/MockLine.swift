import Foundation
import Synchronization

/// The device end of a simulated serial line: a pseudo-terminal whose controller side a thread reads,
/// handing each chunk to the simulated devices, which may answer.
///
/// The gateway opens `devicePath` as it would open `/dev/ttyUSB0`.
public final class MockLine: Sendable {
    /// What the devices on the line do with bytes from the host: the bytes to answer, if any.
    public typealias Handler = @Sendable ([UInt8]) -> [UInt8]

    private let terminal: PseudoTerminal
    private let running = Mutex(true)
    private let received = Mutex<[UInt8]>([])
    private let finished = DispatchSemaphore(value: 0)

    /// The path the gateway opens.
    public var devicePath: String { terminal.devicePath }

    /// Opens a line and starts reading it; `echoing` sends every byte from the host straight back, as a two-wire
    /// RS-485 adapter without echo suppression does.
    public init(echoing: Bool = false, handler: @escaping Handler) throws {
        terminal = try PseudoTerminal()
        Thread.detachNewThread { [self] in loop(echoing: echoing, handler) }
    }

    /// Everything the host has sent so far.
    public var bytesFromHost: [UInt8] { received.withLock { $0 } }

    /// Sends bytes to the host, as a device speaking unprompted.
    public func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(terminal.controller, $0.baseAddress, $0.count) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Stops reading; the line stays open until the object goes away.
    public func stop() {
        guard running.withLock({ let was = $0; $0 = false; return was }) else { return }
        finished.wait()
    }

    private func loop(echoing: Bool, _ handler: Handler) {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 512)
        while running.withLock({ $0 }) {
            var entry = pollfd(fd: terminal.controller, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20) > 0 else { continue }
            let count = read(terminal.controller, &buffer, buffer.count)
            guard count > 0 else { continue }
            let chunk = Array(buffer[0..<count])
            received.withLock { $0 += chunk }
            if echoing { send(chunk) }
            let answer = handler(chunk)
            if !answer.isEmpty { send(answer) }
        }
    }
}

/// Shared mutable state of a mock device, reachable from its reading thread and from the test.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func callAsFunction<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}
