public import Foundation

/// What the hall's queue system asks a device to do.
public enum HallCommand: Sendable, Equatable {
    /// Show a call on a board or window display: 「请A023号到5号窗口」.
    case call(ticket: String, window: String)
    /// Show the same call again.
    case recall(ticket: String, window: String)
    /// Show that a window is paused: 「暂停服务」.
    case pause(window: String)
    /// Show free text.
    case showText(String)
    /// Blank the display (after hours).
    case clear
    /// Issue a ticket.
    case printTicket(Ticket)
    /// Set a board's brightness, 0 to 100 % of what it can do.
    case brightness(percent: Int)
    /// Switch a board's screen on or off (the controller stays on the line and answers).
    case power(on: Bool)
    /// Show a staff member's id on an evaluator pad (a staff id is not a citizen's data).
    case setStaff(String)
    /// Ask an evaluator pad for the rating of `ticket`: its next rating is that ticket's.
    case requestRating(ticket: String)

    /// A queue ticket as the printer issues it. No data of the citizen: a number and a service.
    public struct Ticket: Sendable, Equatable {
        public var number: String
        public var service: String
        public var waitingAhead: Int
        /// The issue time, already in the hall's format and zone.
        public var issuedAt: String
        public var qrPayload: String?

        /// Creates a ticket.
        public init(number: String, service: String, waitingAhead: Int, issuedAt: String, qrPayload: String? = nil) {
            self.number = number
            self.service = service
            self.waitingAhead = waitingAhead
            self.issuedAt = issuedAt
            self.qrPayload = qrPayload
        }
    }

    /// Whether it asks a board to show something (a call, a recall, a text).
    public var shows: Bool {
        switch self {
        case .call, .recall, .showText: true
        default: false
        }
    }

    /// Whether it sets what a board displays (its text and mode): a pause and a clear too. Listed in full: a new
    /// command must be placed.
    public var setsDisplay: Bool {
        switch self {
        case .call, .recall, .pause, .showText, .clear: true
        case .printTicket, .brightness, .power, .setStaff, .requestRating: false
        }
    }

    /// The command's name in events and logs.
    public var name: String {
        switch self {
        case .call: "call"
        case .recall: "recall"
        case .pause: "pause"
        case .showText: "show-text"
        case .clear: "clear"
        case .printTicket: "print-ticket"
        case .brightness: "brightness"
        case .power(let on): on ? "power-on" : "power-off"
        case .setStaff: "set-staff"
        case .requestRating: "request-rating"
        }
    }

    /// The brightest level a board takes: levels run 0…15, as Onbon BX controllers count them (command A3 02) and
    /// the Modbus board profile's brightness register holds them.
    public static let brightestBoardLevel: UInt8 = 15

    /// The board level (0…15) nearest to `percent` of full brightness, the scale `brightness(percent:)` carries.
    public static func boardLevel(percent: Int) -> UInt8 {
        UInt8((Double(min(max(percent, 0), 100)) * Double(brightestBoardLevel) / 100).rounded())
    }

    /// The text a display shows for the command, as halls word it by default.
    public var displayText: String? { displayText(with: DisplayTemplates()) }

    /// The text a display shows for the command, worded by the board's `templates`.
    public func displayText(with templates: DisplayTemplates) -> String? {
        switch self {
        case .call(let ticket, let window): templates.render(templates.call ?? DisplayTemplates.defaultCall, ticket, window)
        case .recall(let ticket, let window):
            templates.render(templates.recall ?? templates.call ?? DisplayTemplates.defaultCall, ticket, window)
        case .pause(let window): templates.render(templates.pause ?? DisplayTemplates.defaultPause, "", window)
        case .showText(let text): text
        case .clear, .printTicket, .brightness, .power, .setStaff, .requestRating: nil
        }
    }
}

/// How one board words calls, recalls and pauses (`templates:` on a device in the hall configuration):
/// `{ticket}` and `{window}` are replaced. A window board says 「请A023号到3号窗口」, the hall board often
/// 「A023 → 3号窗口」.
public struct DisplayTemplates: Sendable, Equatable {
    /// The call's wording; nil: 「请{ticket}号到{window}号窗口」.
    public var call: String?
    /// The recall's wording; nil: the call's.
    public var recall: String?
    /// The pause's wording; nil: 「暂停服务」.
    public var pause: String?

    /// The halls' usual call.
    public static let defaultCall = "请{ticket}号到{window}号窗口"
    /// The halls' usual pause.
    public static let defaultPause = "暂停服务"
    /// The placeholders a template may hold.
    public static let placeholders = ["{ticket}", "{window}"]

    /// Templates; nil keeps the default wording.
    public init(call: String? = nil, recall: String? = nil, pause: String? = nil) {
        self.call = call
        self.recall = recall
        self.pause = pause
    }

    func render(_ template: String, _ ticket: String, _ window: String) -> String {
        template.replacingOccurrences(of: "{ticket}", with: ticket).replacingOccurrences(of: "{window}", with: window)
    }

    /// What is wrong with the templates, by key (`call`, `recall`, `pause`): an unknown placeholder, an empty text,
    /// a pause naming a ticket.
    public var problems: [(key: String, message: String)] {
        var problems: [(String, String)] = []
        for (key, template) in [("call", call), ("recall", recall), ("pause", pause)] {
            guard let template else { continue }
            if template.isEmpty { problems.append((key, "an empty template shows nothing")) }
            var rest = template
            for placeholder in Self.placeholders { rest = rest.replacingOccurrences(of: placeholder, with: "") }
            if let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
                problems.append((key, "unknown placeholder \(rest[open...close]); use {ticket} and {window}"))
            }
            if key == "pause", template.contains("{ticket}") {
                problems.append((key, "a pause has no ticket: use {window} only"))
            }
        }
        return problems
    }
}

extension Unicode.Scalar {
    /// `U+1F600`: names a character in a refusal without repeating the text around it.
    var codePoint: String { "U+" + String(value, radix: 16, uppercase: true) }
}

extension HallCommand.Ticket {
    /// The test ticket (测试票): a number no day's counter gives, the hall's time as on every ticket.
    public static func test(timeZone: TimeZone) -> Self {
        Self(number: "T000", service: "测试票 打印机检查 请勿使用", waitingAhead: 0,
             issuedAt: HallTime.text(Date(), timeZone: timeZone))
    }
}
