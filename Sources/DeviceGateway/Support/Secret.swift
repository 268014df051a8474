/// A secret (a bearer token, a password) that no description, `dump` or error message shows: a type holding one
/// prints `<redacted>` in its place, so a service printed by ServiceLifecycle or a log line never carries it.
public struct Secret: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The secret itself: for the wire, never for text a person reads.
    public let value: String

    /// Wraps `value`.
    public init(_ value: String) {
        self.value = value
    }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    /// No children: `dump` and the default description of a holder stop here.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
