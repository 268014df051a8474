/// A queue ticket as the hall's dispensers print it.
public struct Ticket: Equatable, Sendable {
    /// The queue number, e.g. "A023".
    public var number: String
    /// The service in Chinese, e.g. "社保业务".
    public var serviceName: String
    /// How many people are waiting ahead.
    public var waitingAhead: Int
    /// When the ticket was issued, already formatted, e.g. "2026-11-25 09:30".
    public var issuedAt: String
    /// The hall's name, printed on top.
    public var hallName: String?
    /// A closing line, e.g. "请留意叫号".
    public var footer: String?
    /// Printed as a native QR code (e.g. a link to follow the queue on a phone).
    public var qrPayload: String?
    /// Multiplier for the queue number's width and height: 2 or 3 fit an 80 mm roll.
    public var numberScale: Int
    /// How the ticket is cut off the roll.
    public var cut: EscPosCutMode

    /// A ticket; optional lines default to absent, the number to triple size and the cut to full.
    public init(
        number: String, serviceName: String, waitingAhead: Int, issuedAt: String, hallName: String? = nil,
        footer: String? = nil, qrPayload: String? = nil, numberScale: Int = 3, cut: EscPosCutMode = .full
    ) {
        self.number = number
        self.serviceName = serviceName
        self.waitingAhead = waitingAhead
        self.issuedAt = issuedAt
        self.hallName = hallName
        self.footer = footer
        self.qrPayload = qrPayload
        self.numberScale = numberScale
        self.cut = cut
    }

    /// Lines fed before the cut so the last printed line clears the cutter (python-escpos feeds 6 too).
    public static let feedBeforeCut: UInt8 = 6

    /// The commands that print the ticket: initialise, centre; hall name; bold large number; service name in
    /// Chinese mode; "前面还有 N 人"; time; optional QR (model 2, module 6, level M); footer; feed; cut.
    public var commands: [EscPosCommand] {
        var commands: [EscPosCommand] = [.initialize, .align(.center)]
        func line(_ text: String) {
            let printable = EscPosCommand.printable(text)
            if printable.isEmpty {
                commands.append(.lineFeed)
            } else if printable.unicodeScalars.allSatisfy({ $0.isASCII }) {
                commands += [.text(printable), .lineFeed]
            } else {
                commands += [.chineseMode(true), .text(printable), .chineseMode(false), .lineFeed]
            }
        }
        if let hallName { line(hallName) }
        commands += [.characterSize(width: numberScale, height: numberScale), .bold(true)]
        line(number)
        commands += [.bold(false), .characterSize(width: 1, height: 1)]
        line(serviceName)
        line("前面还有 \(max(0, waitingAhead)) 人")
        line(issuedAt)
        if let qrPayload, !qrPayload.isEmpty {
            commands += [
                .qrCode(.selectModel(.model2)), .qrCode(.moduleSize(6)), .qrCode(.errorCorrection(.medium)),
                .qrCode(.store(Array(qrPayload.utf8))), .qrCode(.print), .lineFeed,
            ]
        }
        if let footer { line(footer) }
        commands += [.feedLines(Self.feedBeforeCut), .cut(cut)]
        return commands
    }

    /// The bytes to send to the printer.
    public func encode() -> [UInt8] {
        EscPosCommand.encode(commands)
    }
}
