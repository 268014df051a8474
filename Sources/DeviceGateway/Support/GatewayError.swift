/// An error of the gateway runtime, in one line a technician understands.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure; new codes may be added.
    public struct Code: Hashable, Sendable {
        private let name: String
        public static let storeMissing = Code(name: "storeMissing")
        public static let portUnavailable = Code(name: "portUnavailable")
        public static let deviceTimeout = Code(name: "deviceTimeout")
        public static let deviceError = Code(name: "deviceError")
        public static let profileMismatch = Code(name: "profileMismatch")
        /// The device cannot carry out the command (wrong kind of device, text it cannot show).
        public static let commandRejected = Code(name: "commandRejected")
        /// The device is offline: it stopped answering, so a command is not even tried.
        public static let deviceOffline = Code(name: "deviceOffline")
        /// The command's frames went out but the device did not confirm them: it may have carried it out (a printer
        /// that took a ticket and did not answer the status request after it).
        public static let unconfirmed = Code(name: "unconfirmed")
    }

    public var code: Code
    /// What happened and where: device, port, errno text.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

extension GatewayError {
    /// An error's text on one line: a log line must not break (SQLite's quick check, for one, reports a line a page).
    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: "; ")
    }
}
