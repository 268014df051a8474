// QSystem (Evgeniy Egorov, Apertum) RS-485 operator boxes ("кнопки") and operator number boards ("табло").
//
// Sources, repository binali-rustamov/apertum-qsystem (a copy of the QSystem tree):
// - src/ru/apertum/qsystem/ub485/core/ActionTransmit.java @ 6fc493ec: a box packet is valid only when it is
//   4 bytes, byte 0 is 01 and byte 3 is 07 ("должно быть 4 байта, иначе коллизия"); byte 1 is the box address,
//   byte 2 the key.
// - src/ru/apertum/qsystem/ub485/core/ButtonDevice.java @ 6fc493ec: doAction(b) gives the keys 31–34 their meaning;
//   the host answers with `01 ADDR SIGNAL 07`, SIGNAL 30–3D listed in the comment above `mess`.
// - src/ru/apertum/qsystem/ub485/core/UBForm.java @ 6fc493ec: the same signal frames from the test panel; also
//   `03 OLD NEW 07` (change a box's address) and `04 ADDR 07` (scan), which this codec does not model.
// - src/ru/apertum/qsystem/server/model/belgorod/BelIndicatorBoardRS.java @ e52e30fd: sendMessage builds
//   `("123" + message + "e").getBytes()` and overwrites bytes 0, 1, 2 and the last with 01, address, blink mode, 07;
//   showToUser sends three characters (`StringUtils.right("        " + number, 3)`), blink 125 while the ticket is
//   invited, 0 otherwise.
//
// There is no checksum: a frame is only its fixed bytes (01 … 07) and fields in range. Noise that happens to look
// like `01 ADDR KEY 07` is a key press. Keys 31–34 are also signal codes, so direction alone tells a key frame
// from a signal frame. Decoders resynchronise deterministically by rejecting any candidate whose
// fixed positions or fields are out of range and dropping one byte; they cannot detect a wrong address or key.

/// A key on a QSystem operator box (ButtonDevice.doAction).
public enum QSystemKey: UInt8, Sendable, CaseIterable {
    /// 31: invite the next customer, or invite the current one again when one is already invited.
    case call = 0x31
    /// 32: start serving the invited customer.
    case start = 0x32
    /// 33: redirect the customer being served to the service configured for the box.
    case redirect = 0x33
    /// 34: finish the customer being served, or dismiss an invited customer who did not come.
    case finish = 0x34
}

/// Box → host: one key press, `01 ADDR KEY 07`.
public struct QSystemKeyFrame: Equatable, Sendable {
    /// The box's RS-485 address (config/qub.adr maps it to an operator).
    public var address: UInt8
    /// The key pressed.
    public var key: QSystemKey

    /// Creates a key frame.
    public init(address: UInt8, key: QSystemKey) {
        self.address = address
        self.key = key
    }

    /// The four bytes on the wire.
    public func encode() -> [UInt8] { [0x01, address, key.rawValue, 0x07] }
}

/// What the host makes a box's lamp and buzzer do (the table above `mess` in ButtonDevice.java).
public enum QSystemBoxSignal: UInt8, Sendable, CaseIterable {
    /// 30: lamp off.
    case off = 0x30
    /// 31: red on.
    case red = 0x31
    /// 32: green on (serving).
    case green = 0x32
    /// 33: red blinking every 200 ms.
    case redBlinkFast = 0x33
    /// 34: green blinking every 200 ms (customers are waiting).
    case greenBlinkFast = 0x34
    /// 35: red blinking every 500 ms.
    case redBlinkSlow = 0x35
    /// 36: green blinking every 500 ms (a customer is invited).
    case greenBlinkSlow = 0x36
    /// 37: beep 500 ms, lamp off.
    case beepOff = 0x37
    /// 38: beep 500 ms, red on.
    case beepRed = 0x38
    /// 39: beep 500 ms, green on.
    case beepGreen = 0x39
    /// 3A: beep 500 ms, red blinking every 200 ms.
    case beepRedBlinkFast = 0x3A
    /// 3B: beep 500 ms, green blinking every 200 ms (the queue was empty and a customer arrived).
    case beepGreenBlinkFast = 0x3B
    /// 3C: beep 500 ms, red blinking every 500 ms.
    case beepRedBlinkSlow = 0x3C
    /// 3D: beep 500 ms, green blinking every 500 ms.
    case beepGreenBlinkSlow = 0x3D
}

/// Host → box: set the lamp and buzzer, `01 ADDR SIGNAL 07`.
public struct QSystemSignalFrame: Equatable, Sendable {
    /// The box's RS-485 address.
    public var address: UInt8
    /// What the lamp and buzzer do.
    public var signal: QSystemBoxSignal

    /// Creates a signal frame.
    public init(address: UInt8, signal: QSystemBoxSignal) {
        self.address = address
        self.signal = signal
    }

    /// The four bytes on the wire.
    public func encode() -> [UInt8] { [0x01, address, signal.rawValue, 0x07] }
}

/// The blink mode byte of a board frame: 0 steady, 1 blink, n blink n times, 125 blink until the next frame
/// (BelIndicatorBoardRS.sendMessage names 0–11 and 125; other values are rejected as out of range).
public struct QSystemDisplayMode: RawRepresentable, Hashable, Sendable {
    /// The byte on the wire.
    public let rawValue: UInt8

    /// A mode from its byte; nil when the source never sends that value.
    public init?(rawValue: UInt8) {
        guard rawValue <= 11 || rawValue == 125 else { return nil }
        self.rawValue = rawValue
    }

    /// 0: no blinking (blinkNo).
    public static let steady = QSystemDisplayMode(uncheckedRawValue: 0)
    /// 1: blink.
    public static let blink = QSystemDisplayMode(uncheckedRawValue: 1)
    /// 125: blink all the time; showToUser uses it while the customer is invited (blinkAll).
    public static let blinkContinuously = QSystemDisplayMode(uncheckedRawValue: 125)

    /// Blink `times` times (2–11); nil outside that range.
    public static func blink(times: Int) -> QSystemDisplayMode? {
        guard (2...11).contains(times) else { return nil }
        return QSystemDisplayMode(uncheckedRawValue: UInt8(times))
    }

    private init(uncheckedRawValue: UInt8) { rawValue = uncheckedRawValue }
}

/// Host → operator board: three characters and a blink mode, `01 ADDR MODE c1 c2 c3 07`.
public struct QSystemDisplayFrame: Equatable, Sendable {
    /// The characters a board accepts: printable ASCII (the source sends digits, letters and spaces).
    public static let characterRange: ClosedRange<UInt8> = 0x20...0x7E

    /// The board's RS-485 address.
    public let address: UInt8
    /// How the board blinks.
    public let mode: QSystemDisplayMode
    /// The three characters, left to right, each in ``characterRange``.
    public let characters: [UInt8]

    /// Creates a frame from three printable ASCII characters; nil otherwise.
    public init?(address: UInt8, mode: QSystemDisplayMode, characters: [UInt8]) {
        guard characters.count == 3, characters.allSatisfy(Self.characterRange.contains) else { return nil }
        self.init(address: address, mode: mode, checkedCharacters: characters)
    }

    private init(address: UInt8, mode: QSystemDisplayMode, checkedCharacters: [UInt8]) {
        self.address = address
        self.mode = mode
        characters = checkedCharacters
    }

    /// The last three characters of `text`, right-aligned with spaces as showToUser does
    /// (`StringUtils.right("        " + number, 3)`); nil when they are not printable ASCII.
    public init?(address: UInt8, mode: QSystemDisplayMode, text: String) {
        let padded = Array(("   " + text).utf8.suffix(3))
        self.init(address: address, mode: mode, characters: padded)
    }

    /// A blank board (showToUser for a dismissed customer sends three spaces, steady).
    public static func blank(address: UInt8) -> QSystemDisplayFrame {
        QSystemDisplayFrame(address: address, mode: .steady, checkedCharacters: [0x20, 0x20, 0x20])
    }

    /// The characters as text.
    public var text: String { String(decoding: characters, as: UTF8.self) }

    /// The seven bytes on the wire.
    public func encode() -> [UInt8] { [0x01, address, mode.rawValue] + characters + [0x07] }
}
