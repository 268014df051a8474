public import Foundation

/// How the gateway numbers tickets when it issues them itself (`tickets:` in the configuration).
public struct TicketSettings: Sendable, Equatable {
    /// Service prefixes: `A` for one service, `B` for another.
    public var prefixes: [String]
    /// 绿色通道 prefixes (elderly, disabled, enterprises): numbered the same way, marked as priority.
    public var priorityPrefixes: [String]
    /// The least number of digits: 3 gives A001; a 1000th ticket is A1000, never a silent wrap to A000.
    public var digits: Int

    /// Creates ticket settings.
    public init(prefixes: [String], priorityPrefixes: [String] = [], digits: Int = 3) {
        self.prefixes = prefixes
        self.priorityPrefixes = priorityPrefixes
        self.digits = digits
    }

    /// Every prefix, ordinary ones first.
    public var allPrefixes: [String] { prefixes + priorityPrefixes }

    /// Why `prefix` numbers no ticket here, or nil when it does.
    public func problem(withPrefix prefix: String) -> String? {
        guard !allPrefixes.contains(prefix) else { return nil }
        return "unknown ticket prefix \(CommandCenter.quoted(prefix)) (configured: " + prefixes.joined(separator: ", ")
            + (priorityPrefixes.isEmpty ? "" : "; 绿色通道: " + priorityPrefixes.joined(separator: ", ")) + ")"
    }
}

/// A ticket that could not be numbered.
public struct TicketError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: Sendable, Equatable {
        /// The prefix is not configured.
        case unknownPrefix
        /// The counter store failed to load or save.
        case store
    }

    /// What went wrong, for matching.
    public var code: Code
    /// One line for the technician.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Where the day's last issued numbers are kept, so a gateway restarted mid-day numbers on instead of from 1.
///
/// Numbers are kept per day of the hall: a day that has not issued tickets loads as empty, which is how counters
/// restart on a new day even when the gateway was down at opening.
public protocol TicketCounterStore: Sendable {
    /// The last number issued per prefix on `day`; empty when none was.
    func load(day: HallDate) async throws -> [String: Int]
    /// Records `number` as the last issued for `prefix` on `day` (0 after a reset); the latest call wins.
    func save(day: HallDate, prefix: String, number: Int) async throws
    /// The latest day numbers were saved for, if any.
    func newestDay() async throws -> HallDate?
}

/// A `TicketCounterStore` in memory: numbers survive a new `TicketCounters` on it, not a process restart.
public actor InMemoryTicketCounterStore: TicketCounterStore {
    private var numbers: [HallDate: [String: Int]] = [:]

    /// Creates an empty store.
    public init() {}

    /// The numbers saved for `day`.
    public func load(day: HallDate) -> [String: Int] { numbers[day] ?? [:] }

    public func newestDay() -> HallDate? { numbers.keys.max() }

    /// Saves a number; older days are dropped, as a hall never goes back to them.
    public func save(day: HallDate, prefix: String, number: Int) {
        numbers = numbers.filter { $0.key >= day }
        numbers[day, default: [:]][prefix] = max(numbers[day]?[prefix] ?? 0, number)
    }
}

/// The gateway's ticket counters: A001, A002, … per service prefix, restarting each day in the hall's time zone.
///
/// The first ticket of a new day starts from 1; `reset()`, called before opening (排号机清空号码), makes sure of it
/// and clears nothing issued that day: a ticket taken before the check keeps its number to itself. Every number is
/// saved before it is returned, so a gateway restarted the same day continues from the last issued one. The day
/// never goes back: a wall clock set back across midnight (NTP correcting a box) numbers on, not from 1 again.
public actor TicketCounters {
    /// The numbering rules.
    public nonisolated let settings: TicketSettings
    private let timeZone: TimeZone
    private let clock: any HallClock
    private let store: any TicketCounterStore
    /// The day `numbers` belong to; nil until loaded.
    private var day: HallDate?
    private var numbers: [String: Int] = [:]
    /// The latest day the store had numbers for when first asked: a clock set back before a restart must not go back
    /// either.
    private var storedDay: HallDate?
    private var askedStore = false
    /// A load under way, shared by the calls that arrive while it runs (the actor is reentrant across `await`).
    private var loading: (day: HallDate, task: Task<[String: Int], any Error>)?

    /// Creates counters; `timeZone` is the hall's, which decides when a day ends.
    public init(settings: TicketSettings, timeZone: TimeZone, clock: any HallClock = SystemHallClock(),
                store: any TicketCounterStore = InMemoryTicketCounterStore()) {
        self.settings = settings
        self.timeZone = timeZone
        self.clock = clock
        self.store = store
    }

    /// Whether `prefix` is a 绿色通道 prefix.
    public nonisolated func isPriority(_ prefix: String) -> Bool { settings.priorityPrefixes.contains(prefix) }

    /// The next ticket number for `prefix`: `A001`, `A002`, … Throws for a prefix that is not configured and when
    /// the store cannot save (the number is then not reused).
    public func next(prefix: String) async throws(TicketError) -> String {
        if let problem = settings.problem(withPrefix: prefix) { throw TicketError(.unknownPrefix, problem) }
        let today = await currentDay()
        try await load(today)
        let number = numbers[prefix, default: 0] + 1
        // Counted before saving: a concurrent call never gets the same number, even if this save fails.
        numbers[prefix] = number
        do {
            try await store.save(day: today, prefix: prefix, number: number)
        } catch {
            throw TicketError(.store, "ticket counter store: cannot save \(prefix) \(number) for \(today): "
                                + describe(error))
        }
        return Self.format(prefix: prefix, number: number, digits: settings.digits)
    }

    /// The last number issued today for `prefix` (0 when none), for status output.
    public func current(prefix: String) async throws(TicketError) -> Int {
        try await load(await currentDay())
        return numbers[prefix, default: 0]
    }

    /// Why a call of `ticket` calls no one: a number of one of these prefixes above the last one issued today. Nil
    /// when it was issued (printed or not: a number is never given twice), is not one of theirs (another queue
    /// system's), or the numbers cannot be loaded.
    public func problem(calling ticket: String) async -> String? {
        let letters = ticket.prefix { $0.isLetter }
        let prefix = letters.uppercased()
        // A-013 is A013, as a number sent to be printed is.
        let digits = ticket.dropFirst(letters.count).drop { $0 == "-" }
        guard settings.allPrefixes.contains(prefix), digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let number = Int(digits), let issued = try? await current(prefix: prefix), number > issued || number == 0
        else { return nil }
        let last = issued == 0
            ? "no \(prefix) ticket was issued"
            : "the last \(prefix) ticket issued is \(Self.format(prefix: prefix, number: issued, digits: settings.digits))"
        return "ticket \(ticket) was not issued today: \(last) (the gateway numbers \(prefix) tickets)"
    }

    /// Starts the counters of the hall's current day: the next ticket of each prefix is 001, unless tickets were
    /// issued that day already (before the check), whose numbers are not given again. Returns those, by prefix.
    @discardableResult
    public func reset() async throws(TicketError) -> [String: Int] {
        let today = await currentDay()
        try await load(today)
        return numbers.filter { $0.value > 0 }
    }

    /// The hall's day now; or a later day numbers were issued for already, while the wall clock reads before it (NTP
    /// correcting a clock that ran ahead; a box without a clock battery booting at its last saved time, or at 1970).
    /// Numbering goes on from that day's: two citizens in the hall must never hold the same number, and the counters
    /// start again once the clock has passed that day.
    private func currentDay() async -> HallDate {
        if !askedStore {
            askedStore = true
            storedDay = try? await store.newestDay()
        }
        let today = HallDate(of: clock.now, in: timeZone)
        let held = [day, storedDay].compactMap { $0 }.max()
        if let held, held > today { return held }
        return today
    }

    /// `A` and 7 with 3 digits give `A007`; 1234 gives `A1234`.
    static func format(prefix: String, number: Int, digits: Int) -> String {
        let text = String(number)
        return prefix + String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// Makes `numbers` those of `today`, from the store when the day changed or nothing is loaded yet.
    private func load(_ today: HallDate) async throws(TicketError) {
        if day == today { return }
        let task: Task<[String: Int], any Error>
        if let pending = loading, pending.day == today {
            task = pending.task
        } else {
            task = Task { [store] in try await store.load(day: today) }
            loading = (today, task)
        }
        let loaded: [String: Int]
        do {
            loaded = try await task.value
        } catch {
            if loading?.day == today { loading = nil }
            throw TicketError(.store, "ticket counter store: cannot load the numbers of \(today): \(describe(error))")
        }
        if loading?.day == today { loading = nil }
        // The first call back installs the numbers; later ones find them (and any numbers issued since).
        if day != today {
            day = today
            numbers = loaded
        }
    }
}
