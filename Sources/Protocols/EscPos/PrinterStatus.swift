/// What a printer sends back unasked or on request, as `PrinterStatusDecoder` reports it.
public enum PrinterStatusFrame: Equatable, Sendable {
    /// One byte answering DLE EOT n; its fixed bits are 0xx1xx10 (0x12 when nothing is wrong).
    case realTime(UInt8)
    /// The four bytes of an automatic status back (GS a), sent whenever an enabled status changes.
    case automaticStatus(AutomaticStatus)

    /// The frame's bytes, as the printer sends them (for the mock printer).
    public var encoded: [UInt8] {
        switch self {
        case .realTime(let status): return [status]
        case .automaticStatus(let status): return status.bytes
        }
    }
}

/// The four bytes of an automatic status back. Fixed bits: first byte 0xx1xx00, the others 0xx0xxxx.
public struct AutomaticStatus: Equatable, Sendable {
    /// Printer information: bit 3 offline, bit 5 cover open.
    public var printer: UInt8
    /// Error information: bit 3 auto-cutter error, bit 5 unrecoverable error, bit 6 auto-recoverable error.
    public var errors: UInt8
    /// Paper sensor information: bits 0-1 roll paper near end, bits 2-3 roll paper out.
    public var paper: UInt8
    /// Paper sensor information, reserved on roll paper printers.
    public var reserved: UInt8

    /// A status from its four bytes; the fixed bits are not checked here (the decoder checks them).
    public init(printer: UInt8, errors: UInt8, paper: UInt8, reserved: UInt8) {
        self.printer = printer
        self.errors = errors
        self.paper = paper
        self.reserved = reserved
    }

    /// The status as sent: printer, errors, paper, reserved.
    public var bytes: [UInt8] { [printer, errors, paper, reserved] }

    /// Whether `byte` can open an automatic status back (0xx1xx00).
    public static func isFirstByte(_ byte: UInt8) -> Bool { byte & 0x93 == 0x10 }
    /// Whether `byte` can be a second, third or fourth byte (0xx0xxxx).
    public static func isFollowingByte(_ byte: UInt8) -> Bool { byte & 0x90 == 0x00 }
}

/// Decodes the printer → host stream: real-time status bytes and four-byte automatic status backs, told apart by
/// their fixed bits (real-time 0xx1xx10, ASB first byte 0xx1xx00, ASB following bytes 0xx0xxxx). Any other
/// byte is discarded. The three patterns exclude each other, so an ASB cut short by a real-time byte costs only
/// the ASB's bytes.
public struct PrinterStatusDecoder: FrameDecoder {
    public private(set) var discardedByteCount = 0
    /// An automatic status back, the longest frame.
    public let maximumBufferedBytes = 4
    public var bufferedByteCount: Int { pending.count }

    private var pending: [UInt8] = []

    /// An empty decoder.
    public init() {}

    /// Whether `byte` is a real-time status reply (0xx1xx10).
    public static func isRealTimeStatus(_ byte: UInt8) -> Bool { byte & 0x93 == 0x12 }

    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [PrinterStatusFrame] {
        var frames: [PrinterStatusFrame] = []
        for byte in bytes {
            pending.append(byte)
            scan(into: &frames)
        }
        return frames
    }

    public mutating func flush() -> [PrinterStatusFrame] {
        var frames: [PrinterStatusFrame] = []
        // Drop the partial status back's first byte and decode what lay behind it, until nothing is left.
        while !pending.isEmpty {
            pending.removeFirst()
            discardedByteCount += 1
            scan(into: &frames)
        }
        return frames
    }

    private mutating func scan(into frames: inout [PrinterStatusFrame]) {
        while let first = pending.first {
            if Self.isRealTimeStatus(first) {
                frames.append(.realTime(first))
                pending.removeFirst()
                continue
            }
            guard AutomaticStatus.isFirstByte(first) else {
                pending.removeFirst()
                discardedByteCount += 1
                continue
            }
            guard pending.dropFirst().allSatisfy(AutomaticStatus.isFollowingByte) else {
                // Cut short: drop one byte and look again from the next.
                pending.removeFirst()
                discardedByteCount += 1
                continue
            }
            guard pending.count >= 4 else { return }
            frames.append(.automaticStatus(
                AutomaticStatus(printer: pending[0], errors: pending[1], paper: pending[2], reserved: pending[3])))
            pending.removeFirst(4)
        }
    }
}

/// What a printer reported, as flags. A real-time reply covers only the aspect its request asks about, so the
/// union of the replies to DLE EOT 1…4 (or one automatic status back) gives the whole picture.
public struct PrinterCondition: OptionSet, Equatable, Sendable {
    /// The flag bits (ours, not a wire format).
    public var rawValue: UInt16
    /// A condition from its flag bits.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Offline (n=1 bit 3; ASB first byte bit 3).
    public static let offline = PrinterCondition(rawValue: 1 << 0)
    /// Cover open (n=2 bit 2; ASB first byte bit 5).
    public static let coverOpen = PrinterCondition(rawValue: 1 << 1)
    /// Roll paper near its end (n=4 bits 2-3; ASB third byte bits 0-1).
    public static let paperNearEnd = PrinterCondition(rawValue: 1 << 2)
    /// Out of paper (n=4 bits 5-6, or printing stopped by paper end: n=2 bit 5; ASB third byte bits 2-3).
    public static let paperOut = PrinterCondition(rawValue: 1 << 3)
    /// Auto-cutter error (n=3 bit 3; ASB second byte bit 3).
    public static let cutterError = PrinterCondition(rawValue: 1 << 4)
    /// Unrecoverable error (n=3 bit 5; ASB second byte bit 5).
    public static let unrecoverableError = PrinterCondition(rawValue: 1 << 5)
    /// Automatically recoverable error such as head overheat (n=3 bit 6; ASB second byte bit 6).
    public static let autoRecoverableError = PrinterCondition(rawValue: 1 << 6)
    /// "Error occurred" without its cause (n=2 bit 6); ask n=3 for the cause.
    public static let error = PrinterCondition(rawValue: 1 << 7)

    /// The condition a real-time reply reports, or nil if `reply` lacks the fixed bits 0xx1xx10.
    public init?(realTimeReply reply: UInt8, to request: PrinterStatusRequest) {
        guard PrinterStatusDecoder.isRealTimeStatus(reply) else { return nil }
        self = []
        func bit(_ index: UInt8) -> Bool { reply >> index & 1 == 1 }
        switch request {
        case .printer:
            if bit(3) { insert(.offline) }
        case .offlineCause:
            if bit(2) { insert(.coverOpen) }
            if bit(5) { insert(.paperOut) }
            if bit(6) { insert(.error) }
        case .errorCause:
            if bit(3) { insert(.cutterError) }
            if bit(5) { insert(.unrecoverableError) }
            if bit(6) { insert(.autoRecoverableError) }
        case .paperSensor:
            // Each pair of bits is one sensor's two lines; either set means the sensor saw it.
            if reply & 0x0C != 0 { insert(.paperNearEnd) }
            if reply & 0x60 != 0 { insert(.paperOut) }
        }
    }

    /// The condition an automatic status back reports.
    public init(automaticStatus status: AutomaticStatus) {
        self = []
        if status.printer & 0x08 != 0 { insert(.offline) }
        if status.printer & 0x20 != 0 { insert(.coverOpen) }
        if status.errors & 0x08 != 0 { insert(.cutterError) }
        if status.errors & 0x20 != 0 { insert(.unrecoverableError) }
        if status.errors & 0x40 != 0 { insert(.autoRecoverableError) }
        if status.paper & 0x03 != 0 { insert(.paperNearEnd) }
        if status.paper & 0x0C != 0 { insert(.paperOut) }
    }

    /// The most severe state these flags amount to.
    public var state: PrinterState {
        if contains(.cutterError) { return .cutterError }
        if contains(.paperOut) { return .paperOut }
        if contains(.coverOpen) { return .coverOpen }
        if !isDisjoint(with: [.offline, .unrecoverableError, .autoRecoverableError, .error]) { return .offline }
        if contains(.paperNearEnd) { return .paperNearEnd }
        return .online
    }
}

/// A printer's condition in one word, for the hall's dashboard. Ordered from most to least severe:
/// cutterError (needs a technician), paperOut and coverOpen (staff must act before the next ticket), offline (any
/// other reason, including errors without a named cause), paperNearEnd (still printing; change the roll soon),
/// online. `PrinterCondition.state` picks the first that applies.
public enum PrinterState: Int, Equatable, Sendable, CaseIterable, Comparable {
    /// The auto-cutter failed (paper jam or blade).
    case cutterError = 0
    /// The roll is empty or printing stopped at paper end.
    case paperOut
    /// The roll cover is open.
    case coverOpen
    /// Offline for another reason, or an unrecoverable or auto-recoverable error.
    case offline
    /// Printing, but the roll is near its end.
    case paperNearEnd
    /// Printing normally.
    case online

    /// More severe states sort first.
    public static func < (lhs: PrinterState, rhs: PrinterState) -> Bool { lhs.rawValue < rhs.rawValue }
}
