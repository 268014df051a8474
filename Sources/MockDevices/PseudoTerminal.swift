import CPseudoTerminal
import Foundation
import Synchronization

/// A pseudo-terminal pair standing in for a serial line: the mock device holds the controller side,
/// the gateway opens `devicePath` exactly as it would open `/dev/ttyUSB0`.
public final class PseudoTerminal: Sendable {
    /// The controller (master) side, read and written by the mock device.
    public let controller: Int32
    /// The path of the device (slave) side.
    public let devicePath: String
    /// Kept open so the line does not hang up while the gateway is not connected.
    private let deviceHold: Int32
    private let controllerOpen = Atomic<Bool>(true)

    /// Opens a new pair in raw mode.
    public init() throws {
        var name = [CChar](repeating: 0, count: 128)
        let controller = hall_open_pseudo_terminal(&name, name.count)
        guard controller >= 0 else {
            throw MockDeviceError("cannot open a pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let hold = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK)
        guard hold >= 0 else {
            close(controller)
            throw MockDeviceError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        for fd in [controller, hold] {
            var attributes = termios()
            tcgetattr(fd, &attributes)
            cfmakeraw(&attributes)
            tcsetattr(fd, TCSANOW, &attributes)
        }
        self.controller = controller
        self.devicePath = path
        self.deviceHold = hold
    }

    /// Closes the controller side: the gateway's end hangs up, as when a USB adapter is unplugged.
    public func hangUp() {
        if controllerOpen.exchange(false, ordering: .relaxed) { close(controller) }
    }

    deinit {
        hangUp()
        close(deviceHold)
    }
}

/// A mock device could not be set up.
public struct MockDeviceError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
