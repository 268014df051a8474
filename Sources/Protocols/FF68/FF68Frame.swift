// The RS-485 bus of callers (呼叫器) and evaluators (评价器) driven by the queue system JackQChen/QueueSystem.
//
// Sources (cited as "frmMain.cs" below):
// - JackQChen/QueueSystem, CallSystem/CallSystem/frmMain.cs at 8b1593d7fc6f314e5a0e4a3f7b35671c15774813:
//   the receive loop in frmMain_Load, SendTicket, SendWait, SendBeep, SendServiceLever, SendStartE, SaveEvaluate.
// - The vendor sheet "21键点阵液晶呼叫器通讯协议" (https://max.book118.com/html/2020/0406/7033135055002126.shtm):
//   "帧格式: ffH 68H 数据长度 数据长度 68H 通讯地址 命令字 数据区 校验和 16H; 每帧都以 ffH 68H 开始;
//   数据长度: 从通讯地址开始到校验和之前所有数据的字节总数".
//
// Wire format: FF 68 L L 68 ADDR FUNC DATA… CS 16, where L counts ADDR + FUNC + DATA (the receive loop reads
// `length - 2` data bytes; SendTicket sends L = 8 with six data bytes) and CS = (ADDR + FUNC + ΣDATA) mod 256
// (every Send… method computes it that way). The leading FF is mandatory: the sheet says every frame starts with
// FF 68 and the host's receive loop only enters a frame on FF followed by 68.

/// One frame of the FF 68 caller/evaluator bus: `FF 68 L L 68 ADDR FUNC DATA… CS 16`.
///
/// The same layout travels both ways: devices report key presses, the host echoes each received frame as the
/// acknowledgement and sends display, beep and evaluator commands.
public struct FF68Frame: Equatable, Sendable {
    /// The device's bus address (the caller's or evaluator's 通讯地址).
    public var address: UInt8
    /// The function code (命令字/功能码); see ``FF68Function``.
    public var function: UInt8
    /// The data area; at most ``maximumDataCount`` bytes.
    public var data: [UInt8]

    /// The most data bytes a frame can carry: L is one byte and also counts ADDR and FUNC.
    public static let maximumDataCount = 253

    /// The length byte's smallest value: a frame always has ADDR and FUNC (the host's beep has no data).
    public static let minimumLength: UInt8 = 2

    /// Creates a frame.
    public init(address: UInt8, function: UInt8, data: [UInt8] = []) {
        self.address = address
        self.function = function
        self.data = data
    }

    /// The length byte L: ADDR + FUNC + DATA.
    public var length: UInt8 { UInt8(truncatingIfNeeded: data.count + 2) }

    /// The checksum byte: (ADDR + FUNC + ΣDATA) mod 256.
    public var checksum: UInt8 { Checksum.sum8(data) &+ address &+ function }

    /// The bytes on the wire. `data` must hold at most ``maximumDataCount`` bytes.
    public func encode() -> [UInt8] {
        precondition(data.count <= Self.maximumDataCount, "FF 68 frames carry at most 253 data bytes")
        var bytes: [UInt8] = [0xFF, 0x68, length, length, 0x68, address, function]
        bytes.reserveCapacity(data.count + 9)
        bytes += data
        bytes += [checksum, 0x16]
        return bytes
    }
}

/// The function codes the source uses. Unknown codes still decode: they are kept as raw bytes in ``FF68Frame``.
public enum FF68Function {
    /// Host → evaluator: with data `0B` it opens an evaluation (SendStartE); with an evaluator's key it is the
    /// acknowledgement of that key press (the receive loop answers FUNC 11 with FUNC 01).
    public static let evaluatorCommand: UInt8 = 0x01
    /// Host → caller: six digit codes for the caller's LED (SendTicket, SendWait); host → evaluator: one byte,
    /// the service level in stars (SendServiceLever).
    public static let display: UInt8 = 0x02
    /// Host → caller: sound the buzzer, no data (SendBeep).
    public static let beep: UInt8 = 0x03
    /// Evaluator → host: one key press, the key code in the first data byte.
    public static let evaluatorKey: UInt8 = 0x11
    /// Caller → host key frames: the source never tests their FUNC (anything but 11 is a caller key, read from the
    /// last data byte). 01 is an assumption for what our mock callers send, not a documented value.
    public static let assumedCallerKey: UInt8 = 0x01
}

/// What a caller key frame asks for, as the receive loop in frmMain.cs reads its last one or two data bytes.
public enum FF68CallerAction: Equatable, Sendable {
    /// Key 0C 呼叫: call the next ticket.
    case callNext
    /// Key 0D 重呼: call the current ticket again.
    case recall
    /// Key 0B 评价: finish the ticket and ask the citizen for an evaluation.
    case requestEvaluation
    /// Key 0E 取消: "cancel", no longer used by the source.
    case cancel
    /// Digit 6 then 0F 确认: give up the current ticket (弃号).
    case giveUp
    /// Digit 0 then 0F 确认: put the current ticket on hold (挂起).
    case suspend
    /// Digit 3 then 0F 确认: call back the ticket on hold (回呼).
    case callBack
    /// Key 11 一米: the one-metre line key; the source does nothing with it.
    case oneMetreLine
    /// Key 12 等候: pause the window (暂停服务).
    case pause
    /// Key 13 转移: transfer the ticket back to the queue.
    case transfer
    /// Any other key sequence (digits, confirm after other digits); the source ignores these.
    case unassigned(keys: [UInt8])

    /// The key codes the caller sends for this action.
    public var keys: [UInt8] {
        switch self {
        case .callNext: [0x0C]
        case .recall: [0x0D]
        case .requestEvaluation: [0x0B]
        case .cancel: [0x0E]
        case .giveUp: [0x06, 0x0F]
        case .suspend: [0x00, 0x0F]
        case .callBack: [0x03, 0x0F]
        case .oneMetreLine: [0x11]
        case .pause: [0x12]
        case .transfer: [0x13]
        case .unassigned(let keys): keys
        }
    }

    /// Reads the keys of a caller frame the way the source does; nil when there are none.
    public init?(keys: [UInt8]) {
        guard let last = keys.last else { return nil }
        switch last {
        case 0x0B: self = .requestEvaluation
        case 0x0C: self = .callNext
        case 0x0D: self = .recall
        case 0x0E: self = .cancel
        case 0x0F where keys.count == 2 && keys[0] == 0x06: self = .giveUp
        case 0x0F where keys.count == 2 && keys[0] == 0x00: self = .suspend
        case 0x0F where keys.count == 2 && keys[0] == 0x03: self = .callBack
        case 0x11: self = .oneMetreLine
        case 0x12: self = .pause
        case 0x13: self = .transfer
        default: self = .unassigned(keys: keys)
        }
    }
}

/// The caller's LED: two three-digit fields, the people waiting and the ticket, one code per digit.
///
/// Codes 0–9 are digits and 0A is a blank (SendTicket blanks the waiting field, SendWait the ticket field).
public struct FF68CallerDisplay: Equatable, Sendable {
    /// The code of a blank digit.
    public static let blank: UInt8 = 0x0A

    /// The waiting-count field, three codes.
    public var waiting: [UInt8]
    /// The ticket field, three codes.
    public var ticket: [UInt8]

    /// Creates a display from two three-code fields.
    public init(waiting: [UInt8], ticket: [UInt8]) {
        self.waiting = waiting
        self.ticket = ticket
    }

    /// The last three digits of a ticket with the waiting field blank, as SendTicket does (it sends
    /// `ticketNumber.Substring(Length - 3, 3)`); nil when those three characters are not digits.
    public init?(ticket: String) {
        let lastThree = Array(ticket.utf8.suffix(3))
        guard lastThree.count == 3, lastThree.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        self.init(waiting: [Self.blank, Self.blank, Self.blank], ticket: lastThree.map { $0 - 0x30 })
    }

    /// The number of people waiting with the ticket field blank, as SendWait does (999 at most, zero-padded).
    public init(waitingCount: Int) {
        let count = min(max(waitingCount, 0), 999)
        self.init(waiting: [UInt8(count / 100), UInt8(count / 10 % 10), UInt8(count % 10)],
                  ticket: [Self.blank, Self.blank, Self.blank])
    }

    /// The six data bytes of the display command: waiting field first.
    public var codes: [UInt8] { waiting + ticket }

    /// What the LED shows: digits, a space for a blank, `?` for a code the source never sends.
    public var text: String {
        String(decoding: codes.map { code -> UInt8 in
            switch code {
            case 0...9: 0x30 + code
            case Self.blank: 0x20
            default: 0x3F
            }
        }, as: UTF8.self)
    }
}

extension FF68Frame {
    /// A caller's key press; `function` is not documented by the source (see ``FF68Function/assumedCallerKey``).
    public static func callerKeyPress(
        address: UInt8, action: FF68CallerAction, function: UInt8 = FF68Function.assumedCallerKey
    ) -> FF68Frame {
        FF68Frame(address: address, function: function, data: action.keys)
    }

    /// An evaluator's key press (FUNC 11, the key in one data byte).
    public static func evaluatorKeyPress(address: UInt8, key: UInt8) -> FF68Frame {
        FF68Frame(address: address, function: FF68Function.evaluatorKey, data: [key])
    }

    /// Host → caller: show a display (SendTicket, SendWait).
    public static func callerDisplay(address: UInt8, _ display: FF68CallerDisplay) -> FF68Frame {
        FF68Frame(address: address, function: FF68Function.display, data: display.codes)
    }

    /// Host → caller: sound the buzzer (SendBeep).
    public static func beep(address: UInt8) -> FF68Frame {
        FF68Frame(address: address, function: FF68Function.beep)
    }

    /// Host → evaluator: the service level in stars; the source sends 5, the pad's default (SendServiceLever).
    public static func serviceLevel(address: UInt8, stars: UInt8) -> FF68Frame {
        FF68Frame(address: address, function: FF68Function.display, data: [stars])
    }

    /// Host → evaluator: open an evaluation (SendStartE: FUNC 01, data 0B).
    public static func startEvaluation(address: UInt8) -> FF68Frame {
        FF68Frame(address: address, function: FF68Function.evaluatorCommand, data: [0x0B])
    }

    /// What the host sends back to acknowledge this frame: the frame itself, except that an evaluator key press
    /// (FUNC 11) is answered with FUNC 01 and the same data (the receive loop writes 01 and `check - 0x10`).
    public var acknowledgement: FF68Frame {
        guard function == FF68Function.evaluatorKey else { return self }
        return FF68Frame(address: address, function: FF68Function.evaluatorCommand, data: data)
    }

    /// The evaluator key of an evaluator frame (FUNC 11): its first data byte, nil for other frames.
    ///
    /// The source stores it as a result through SaveEvaluate: key 0 → 1 不满意, 1 → 0 (默认, no verdict),
    /// 2 → 3 满意, anything else → 4 非常满意 (Service/Model/BEvaluateModel.cs: "0默认1不满意3满意 4非常满意").
    /// Profiles map keys to the national scale; this codec reports the raw key.
    public var evaluatorKey: UInt8? {
        function == FF68Function.evaluatorKey ? data.first : nil
    }

    /// The action of a caller frame (any FUNC but 11, at least one data byte); nil for other frames.
    public var callerAction: FF68CallerAction? {
        function == FF68Function.evaluatorKey ? nil : FF68CallerAction(keys: data)
    }

    /// The caller display of a host display command (FUNC 02 with six codes); nil for other frames.
    public var callerDisplay: FF68CallerDisplay? {
        guard function == FF68Function.display, data.count == 6 else { return nil }
        return FF68CallerDisplay(waiting: Array(data[0..<3]), ticket: Array(data[3..<6]))
    }
}
