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

    /// The command's name in events and logs.
    public var name: String {
        switch self {
        case .call: "call"
        case .recall: "recall"
        case .pause: "pause"
        case .showText: "show-text"
        case .clear: "clear"
        case .printTicket: "print-ticket"
        }
    }

    /// The text a display shows for the command, as halls word it.
    public var displayText: String? {
        switch self {
        case .call(let ticket, let window), .recall(let ticket, let window): "请\(ticket)号到\(window)号窗口"
        case .pause: "暂停服务"
        case .showText(let text): text
        case .clear, .printTicket: nil
        }
    }
}
