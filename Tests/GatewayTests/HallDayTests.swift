@testable import DeviceGateway
import Foundation
import Testing

/// The hall's working day on a `ManualHallClock`: every test steps the clock from one deadline of the day to the
/// next, so nothing sleeps and every action happens at an exact instant.
@Suite(.timeLimit(.minutes(1))) struct HallDayTests {
    let shanghai: TimeZone

    init() throws { shanghai = try #require(TimeZone(identifier: "Asia/Shanghai")) }

    /// The hall of the issue: a lunch break on weekdays, Saturday mornings, Sunday closed; the week of 2026-10-05
    /// has a holiday on Wednesday and Sunday 10-11 worked with Monday's hours (调休).
    let hallYAML = """
        hours:
          monday-friday: ["09:00-12:00", "13:30-17:00"]
          saturday: ["09:00-12:00"]
          sunday: closed
          holidays: [2026-10-07]
          working-days: {2026-10-11: monday}
          check-before-opening-minutes: 15
          late-call-minutes: 45
        tickets:
          prefixes: [A, B, C]
          priority-prefixes: [V]   # 绿色通道
          digits: 3
        """

    func hallDay() throws -> HallDayConfig {
        try #require(try ConfigLoader.parseHallDay(yaml: hallYAML, file: "hall.yaml", timeZone: shanghai))
    }

    /// An instant on the hall's wall clock: `2026-10-05 08:45`.
    func local(_ text: String) throws -> Date {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = shanghai
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        return try #require(formatter.date(from: text), "\(text)")
    }

    // MARK: The day's schedule

    @Test func aWeekWithALunchBreakAHolidayAndAWorkedSunday() async throws {
        let config = try hallDay()
        let hours = try #require(config.hours)
        let clock = ManualHallClock(now: try local("2026-10-04 20:00"))  // Sunday evening
        let log = DayLog(clock: clock)
        let day = HallDay(hours: hours, checkLead: config.checkBeforeOpening, clock: clock, actions: log)

        try await drive(day, clock, until: try local("2026-10-12 00:00"))

        // UTC = Shanghai − 8 h: 08:45 is 00:45Z, 09:00 01:00Z, 12:00 04:00Z, 13:30 05:30Z, 17:00 09:00Z.
        let monday = [
            "2026-10-05T00:45:00Z beforeOpening 2026-10-05",
            "2026-10-05T01:00:00Z opened",
            "2026-10-05T04:00:00Z break until 2026-10-05T05:30:00Z",
            "2026-10-05T05:30:00Z opened",
            "2026-10-05T09:00:00Z closed",
        ]
        let expected = ["2026-10-04T12:00:00Z closed"] + monday + [
            "2026-10-06T00:45:00Z beforeOpening 2026-10-06",
            "2026-10-06T01:00:00Z opened",
            "2026-10-06T04:00:00Z break until 2026-10-06T05:30:00Z",
            "2026-10-06T05:30:00Z opened",
            "2026-10-06T09:00:00Z closed",
            // Wednesday 10-07 is a holiday: no check, boards stay off.
            "2026-10-08T00:45:00Z beforeOpening 2026-10-08",
            "2026-10-08T01:00:00Z opened",
            "2026-10-08T04:00:00Z break until 2026-10-08T05:30:00Z",
            "2026-10-08T05:30:00Z opened",
            "2026-10-08T09:00:00Z closed",
            "2026-10-09T00:45:00Z beforeOpening 2026-10-09",
            "2026-10-09T01:00:00Z opened",
            "2026-10-09T04:00:00Z break until 2026-10-09T05:30:00Z",
            "2026-10-09T05:30:00Z opened",
            "2026-10-09T09:00:00Z closed",
            // Saturday: mornings only, so noon is the day's closing, not a break.
            "2026-10-10T00:45:00Z beforeOpening 2026-10-10",
            "2026-10-10T01:00:00Z opened",
            "2026-10-10T04:00:00Z closed",
            // Sunday 10-11, worked as a Monday.
            "2026-10-11T00:45:00Z beforeOpening 2026-10-11",
            "2026-10-11T01:00:00Z opened",
            "2026-10-11T04:00:00Z break until 2026-10-11T05:30:00Z",
            "2026-10-11T05:30:00Z opened",
            "2026-10-11T09:00:00Z closed",
        ]
        #expect(await log.entries == expected)
    }

    /// What a restart's opening or closing is named after: the same instant anywhere within one state.
    @Test func eachStateBeganAtItsOpeningOrTheClosingBeforeIt() throws {
        let schedule = HallDaySchedule(hours: try #require(try hallDay().hours))
        // Monday 2026-10-05: 09:00-12:00, 13:30-17:00; the holiday on Wednesday 7th; Sunday 11th worked.
        for (at, began) in [("2026-10-05 10:00", "2026-10-05 09:00"), ("2026-10-05 11:59", "2026-10-05 09:00"),
                            ("2026-10-05 12:30", "2026-10-05 12:00"), ("2026-10-05 13:30", "2026-10-05 13:30"),
                            ("2026-10-05 23:00", "2026-10-05 17:00"), ("2026-10-06 08:59", "2026-10-05 17:00"),
                            ("2026-10-07 10:00", "2026-10-06 17:00"), ("2026-10-11 09:30", "2026-10-11 09:00"),
                            ("2026-10-10 18:00", "2026-10-10 12:00")] {
            #expect(schedule.stateBegan(at: try local(at)) == (try local(began)), "at \(at)")
        }
    }

    @Test func timesAreWrittenInTheHallsZoneCutToTheMinuteOrSecond() throws {
        // Expected values from Python's zoneinfo (the tz database itself), not from Foundation.
        let newYork = try #require(TimeZone(identifier: "America/New_York"))
        let late = Date(timeIntervalSince1970: 1_764_964_051.999)
        #expect(HallTime.text(late, timeZone: shanghai) == "2025-12-06 03:47")
        #expect(HallTime.text(late, timeZone: shanghai, toTheSecond: true) == "2025-12-06 03:47:31", "cut, not rounded")
        // A zone with summer time: the last second of 8 March (EST), and the first instant of EDT (02:00 became 03:00).
        #expect(HallTime.text(Date(timeIntervalSince1970: 1_741_496_399), timeZone: newYork, toTheSecond: true)
                == "2025-03-08 23:59:59")
        #expect(HallTime.text(Date(timeIntervalSince1970: 1_741_503_600.5), timeZone: newYork, toTheSecond: true)
                == "2025-03-09 03:00:00")
    }

    /// What `gatewayd status` says of the day (from a duty officer's trial: nothing told whether the hall counted as
    /// open, nor when the boards and the check would next act).
    @Test func theDayIsDescribedWithWhatComesNext() throws {
        let day = try hallDay()
        let schedule = HallDaySchedule(hours: try #require(day.hours), checkLead: day.checkBeforeOpening)
        // Monday 2026-10-05: 09:00-12:00, 13:30-17:00; the holiday on Wednesday 7th; Saturday mornings; Sunday 11th worked.
        for (at, said) in [("2026-10-05 10:00", "open until 12:00"),
                           ("2026-10-05 12:30", "on a break until 13:30 (boards on)"),
                           ("2026-10-05 08:00", "closed; opens at 09:00, the check at 08:45"),
                           ("2026-10-05 08:50", "closed; opens at 09:00"),
                           ("2026-10-05 18:00", "closed; opens at 2026-10-06 09:00, the check at 08:45"),
                           ("2026-10-06 20:00", "closed; opens at 2026-10-08 09:00, the check at 08:45"),
                           ("2026-10-10 12:00", "closed; opens at 2026-10-11 09:00, the check at 08:45")] {
            #expect(schedule.describe(at: try local(at), timeZone: shanghai) == said, "at \(at)")
        }
    }

    @Test func startedMidMorningTurnsBoardsOnWithoutClearingTheDay() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 10:30"))
        let log = DayLog(clock: clock)
        try await drive(HallDay(hours: hours, clock: clock, actions: log), clock, until: try local("2026-10-06 09:00"))
        #expect(await log.entries == [
            "2026-10-05T02:30:00Z opened",
            "2026-10-05T04:00:00Z break until 2026-10-05T05:30:00Z",
            "2026-10-05T05:30:00Z opened",
            "2026-10-05T09:00:00Z closed",
            "2026-10-06T00:45:00Z beforeOpening 2026-10-06",
            "2026-10-06T01:00:00Z opened",
        ])
    }

    @Test func startedAtNightTurnsBoardsOffAndChecksBeforeTheNextOpening() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 22:00"))
        let log = DayLog(clock: clock)
        try await drive(HallDay(hours: hours, clock: clock, actions: log), clock, until: try local("2026-10-06 09:00"))
        #expect(await log.entries == [
            "2026-10-05T14:00:00Z closed",
            "2026-10-06T00:45:00Z beforeOpening 2026-10-06",
            "2026-10-06T01:00:00Z opened",
        ])
    }

    @Test func startedAfterTheCheckTimeButBeforeOpeningStillChecks() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 08:50"))
        let log = DayLog(clock: clock)
        try await drive(HallDay(hours: hours, clock: clock, actions: log), clock, until: try local("2026-10-05 09:00"))
        #expect(await log.entries == [
            "2026-10-05T00:50:00Z beforeOpening 2026-10-05",
            "2026-10-05T00:50:00Z closed",
            "2026-10-05T01:00:00Z opened",
        ])
    }

    @Test func aCheckAtTheOpeningItselfRunsThoughTheWakeIsLate() async throws {
        // check-before-opening-minutes: 0, on a clock whose sleeps wake a little after their deadline, as real ones do.
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 22:00"))
        let log = DayLog(clock: clock)
        let day = HallDay(hours: hours, checkLead: .zero, clock: clock, actions: log)
        let stop = StopSignal()
        async let running: Void = day.run(until: stop)
        let end = try local("2026-10-06 10:00")
        while true {
            let deadline = await clock.nextDeadline()
            guard deadline <= end else { break }
            clock.advance(to: deadline.addingTimeInterval(0.003))
        }
        clock.advance(to: end)
        _ = await clock.nextDeadline()
        stop.stop()
        await running
        let entries = await log.entries
        #expect(entries.map { $0.split(separator: " ").dropFirst().joined(separator: " ") }
                == ["closed", "beforeOpening 2026-10-06", "opened"], "\(entries)")
    }

    @Test func startedOverLunchShowsTheBreak() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 12:30"))
        let log = DayLog(clock: clock)
        try await drive(HallDay(hours: hours, clock: clock, actions: log), clock, until: try local("2026-10-05 13:30"))
        #expect(await log.entries == [
            "2026-10-05T04:30:00Z break until 2026-10-05T05:30:00Z",
            "2026-10-05T05:30:00Z opened",
        ])
    }

    @Test func aBreakLongerThanTheLongestBreakTurnsBoardsOff() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 11:00"))
        let log = DayLog(clock: clock)
        let day = HallDay(hours: hours, longestBreak: .seconds(60 * 60), clock: clock, actions: log)
        try await drive(day, clock, until: try local("2026-10-05 13:30"))
        #expect(await log.entries == [
            "2026-10-05T03:00:00Z opened",
            "2026-10-05T04:00:00Z closed",
            "2026-10-05T05:30:00Z opened",
        ])
    }

    @Test func aClockThatJumpsPastOpeningSkipsTheMissedCheck() async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-05 07:00"))
        let log = DayLog(clock: clock)
        let stop = StopSignal()
        async let running: Void = HallDay(hours: hours, clock: clock, actions: log).run(until: stop)
        // Asleep until the check at 08:45; the box was suspended and wakes at 10:00.
        #expect(await clock.nextDeadline() == (try local("2026-10-05 08:45")))
        clock.advance(to: try local("2026-10-05 10:00"))
        #expect(await clock.nextDeadline() == (try local("2026-10-05 12:00")))
        stop.stop()
        await running
        #expect(await log.entries == ["2026-10-04T23:00:00Z closed", "2026-10-05T02:00:00Z opened"])
    }

    /// Found by the hall's-day trial: set back a day while open, the day waited for the next change of the day it
    /// left (a day later), so the day it came back to was neither checked nor closed and its boards stayed on.
    @Test func aClockSetBackADayWhileRunningRunsTheDayItCameBackTo() async throws {
        let entries = try await dayWithClockSteps(from: "2026-10-06 10:00", until: "2026-10-05 17:30") { day, clock in
            #expect(await clock.nextDeadline() == (try local("2026-10-06 12:00")))
            clock.advance(to: try local("2026-10-05 08:50"))
            await day.clockWasSet()
        }
        #expect(entries == [
            "2026-10-06T02:00:00Z opened",
            "2026-10-05T00:50:00Z beforeOpening 2026-10-05",
            "2026-10-05T00:50:00Z closed",
            "2026-10-05T01:00:00Z opened",
            "2026-10-05T04:00:00Z break until 2026-10-05T05:30:00Z",
            "2026-10-05T05:30:00Z opened",
            "2026-10-05T09:00:00Z closed",
        ])
    }

    /// NTP stepping a clock back a little after the opening: the opening is not done again (a second greeting would
    /// wipe the calls shown since), and the day goes on.
    @Test func aClockSetBackWithinTheDayRepeatsNothing() async throws {
        let entries = try await dayWithClockSteps(from: "2026-10-05 08:50", until: "2026-10-05 12:10") { day, clock in
            try await advance(clock, to: try local("2026-10-05 09:00").addingTimeInterval(30))
            clock.advance(to: try local("2026-10-05 08:59"))
            await day.clockWasSet()
            #expect(await clock.nextDeadline() == (try local("2026-10-05 09:00")))
        }
        #expect(entries == [
            "2026-10-05T00:50:00Z beforeOpening 2026-10-05",
            "2026-10-05T00:50:00Z closed",
            "2026-10-05T01:00:00Z opened",
            "2026-10-05T04:00:00Z break until 2026-10-05T05:30:00Z",
        ])
    }

    /// A clock set to the evening by mistake and put right the same day: the day it jumped over was never carried
    /// out, so it is not taken as done (the boards would stay off until the next morning).
    @Test func aClockSetForwardByMistakeAndPutRightRunsTheRestOfTheDay() async throws {
        let entries = try await dayWithClockSteps(from: "2026-10-05 10:00", until: "2026-10-05 17:30") { day, clock in
            #expect(await clock.nextDeadline() == (try local("2026-10-05 12:00")))
            clock.advance(to: try local("2026-10-05 18:00"))
            #expect(await clock.nextDeadline() == (try local("2026-10-06 08:45")))
            clock.advance(to: try local("2026-10-05 10:05"))
            await day.clockWasSet()
        }
        #expect(entries == [
            "2026-10-05T02:00:00Z opened",
            "2026-10-05T10:00:00Z closed",
            "2026-10-05T02:05:00Z opened",
            "2026-10-05T04:00:00Z break until 2026-10-05T05:30:00Z",
            "2026-10-05T05:30:00Z opened",
            "2026-10-05T09:00:00Z closed",
        ])
    }

    /// A hall open until midnight: a clock set back a little after its closing does not open it again.
    @Test func aClockSetBackAfterAMidnightClosingRepeatsNothing() async throws {
        let hours = try #require(try ConfigLoader.parseHallDay(yaml: """
            hours:
              monday-friday: ["09:00-24:00"]
            """, file: "hall.yaml", timeZone: shanghai)?.hours)
        let entries = try await dayWithClockSteps(from: "2026-10-05 23:50", until: "2026-10-06 00:30", hours: hours) { day, clock in
            try await advance(clock, to: try local("2026-10-06 00:00").addingTimeInterval(30))
            clock.advance(to: try local("2026-10-05 23:58"))
            await day.clockWasSet()
            #expect(await clock.nextDeadline() == (try local("2026-10-06 00:00")))
        }
        #expect(entries == ["2026-10-05T15:50:00Z opened", "2026-10-05T16:00:00Z closed"])
    }

    /// Runs the hall of the issue (or `hours`) from `start` through `steps` (which set the clock as a technician or NTP would), then
    /// deadline by deadline to `end`; returns what the day did.
    func dayWithClockSteps(from start: String, until end: String, hours: OpeningHours? = nil,
                           _ steps: (HallDay, ManualHallClock) async throws -> Void) async throws -> [String] {
        let hours = try hours ?? #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local(start))
        let log = DayLog(clock: clock)
        let day = HallDay(hours: hours, clock: clock, actions: log)
        let stop = StopSignal()
        async let running: Void = day.run(until: stop)
        try await steps(day, clock)
        try await advance(clock, to: try local(end))
        stop.stop()
        await running
        return await log.entries
    }

    @Test func runReturnsWhenTheStopFiresOnTheSystemClock() async throws {
        let hours = try #require(try hallDay().hours)
        let log = DayLog(clock: ManualHallClock(now: Date()))
        let stop = StopSignal()
        let started = ContinuousClock.now
        async let running: Void = HallDay(hours: hours, actions: log).run(until: stop)
        // The day's first action shows the loop is running (and now waiting for its next change). Two actions when
        // the test runs in the quarter hour before opening: the check, then the state.
        #expect(await eventually { await log.entries.count >= 1 })
        stop.stop()
        await running
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func opensAtNineLocalTimeAcrossADaylightSavingChange() throws {
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        let nine = try #require(OpenInterval("09:00-17:00"))
        let hours = OpeningHours(timeZone: berlin, weekly: [.friday: [nine], .monday: [nine]])
        // Clocks go forward on Sunday 2026-03-29: Friday's 09:00 is 08:00Z, Monday's 07:00Z.
        let fridayMidnightUTC = Date(timeIntervalSince1970: 1_774_569_600)  // 2026-03-27T00:00:00Z
        let friday = try #require(hours.nextTransition(after: fridayMidnightUTC))
        #expect(friday.change == .opens)
        #expect(iso(friday.date) == "2026-03-27T08:00:00Z")
        let saturday = try #require(HallDate("2026-03-28"))
        let monday = try #require(hours.nextDayStart(notBefore: hours.date(saturday, .midnight)))
        #expect(monday.day == HallDate("2026-03-30"))
        #expect(iso(monday.date) == "2026-03-30T07:00:00Z")
        #expect(hours.isOpen(at: monday.date))
        #expect(!hours.isOpen(at: monday.date.addingTimeInterval(-1)))
    }

    /// Found in a trial: a Sunday opening at 02:30 in Berlin, on the night the clocks skip from 02:00 to 03:00,
    /// opened at 03:30.
    @Test func anOpeningInTheHourTheClocksSkipIsAtTheChange() throws {
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        let hours = OpeningHours(timeZone: berlin, weekly: [.sunday: [try #require(OpenInterval("02:30-05:00"))]])
        let sunday = try #require(HallDate("2027-03-28"))
        #expect(iso(hours.date(sunday, try #require(TimeOfDay("02:30")))) == "2027-03-28T01:00:00Z", "03:00 CEST")
        #expect(iso(hours.date(sunday, try #require(TimeOfDay("03:30")))) == "2027-03-28T01:30:00Z")
        #expect(iso(hours.date(sunday, try #require(TimeOfDay("01:30")))) == "2027-03-28T00:30:00Z")
        // The night clocks go back, 02:30 comes twice: the first is taken.
        let autumn = try #require(HallDate("2027-10-31"))
        #expect(iso(hours.date(autumn, try #require(TimeOfDay("02:30")))) == "2027-10-31T00:30:00Z")
    }

    // MARK: Ticket counters

    @Test func ticketsCountPerPrefixAndRestartAtTheNextDaysCheck() async throws {
        let config = try hallDay()
        let hours = try #require(config.hours)
        let clock = ManualHallClock(now: try local("2026-10-05 07:00"))
        let counters = TicketCounters(settings: try #require(config.tickets), timeZone: shanghai, clock: clock)
        let log = DayLog(clock: clock, counters: counters)
        let stop = StopSignal()
        async let running: Void = HallDay(hours: hours, clock: clock, actions: log).run(until: stop)

        try await advance(clock, to: try local("2026-10-05 09:10"))
        #expect(try await counters.next(prefix: "A") == "A001")
        #expect(try await counters.next(prefix: "A") == "A002")
        #expect(try await counters.next(prefix: "B") == "B001")
        #expect(try await counters.next(prefix: "V") == "V001")
        #expect(counters.isPriority("V") && !counters.isPriority("A"))

        try await advance(clock, to: try local("2026-10-06 09:10"))
        stop.stop()
        await running
        #expect(try await counters.next(prefix: "A") == "A001")
        #expect(try await counters.next(prefix: "B") == "B001")
        // The reset happened in the check, before opening.
        #expect(await log.entries.contains("2026-10-06T00:45:00Z beforeOpening 2026-10-06 (counters reset)"))
    }

    @Test func aNewDayRestartsTheCountersEvenWithoutAReset() async throws {
        let clock = ManualHallClock(now: try local("2026-10-05 16:00"))
        let counters = TicketCounters(settings: TicketSettings(prefixes: ["A"]), timeZone: shanghai, clock: clock)
        #expect(try await counters.next(prefix: "A") == "A001")
        #expect(try await counters.next(prefix: "A") == "A002")
        // 23:59 in Shanghai is still the same day although it is another hour in UTC.
        clock.advance(to: try local("2026-10-05 23:59"))
        #expect(try await counters.next(prefix: "A") == "A003")
        clock.advance(to: try local("2026-10-06 09:30"))
        #expect(try await counters.next(prefix: "A") == "A001")
    }

    @Test func aRestartMidDayContinuesFromTheStoredNumber() async throws {
        let clock = ManualHallClock(now: try local("2026-10-05 10:00"))
        let store = InMemoryTicketCounterStore()
        let settings = TicketSettings(prefixes: ["A", "B"])
        let before = TicketCounters(settings: settings, timeZone: shanghai, clock: clock, store: store)
        for _ in 1...5 { _ = try await before.next(prefix: "A") }
        _ = try await before.next(prefix: "B")

        let after = TicketCounters(settings: settings, timeZone: shanghai, clock: clock, store: store)
        #expect(try await after.next(prefix: "A") == "A006")
        #expect(try await after.next(prefix: "B") == "B002")
        // The check before opening, after tickets were taken that day: none of their numbers is given again.
        #expect(try await after.reset() == ["A": 6, "B": 2])
        #expect(try await after.next(prefix: "B") == "B003")
        let afterReset = TicketCounters(settings: settings, timeZone: shanghai, clock: clock, store: store)
        #expect(try await afterReset.next(prefix: "A") == "A007")
    }

    /// Found with a wall clock stepped back across midnight (NTP correcting the box): A001 and A002 were issued again.
    @Test func aWallClockSetBackAcrossMidnightIssuesNoNumberTwice() async throws {
        let clock = ManualHallClock(now: try local("2027-03-30 00:30"))
        let store = InMemoryTicketCounterStore()
        let settings = TicketSettings(prefixes: ["A"])
        let counters = TicketCounters(settings: settings, timeZone: shanghai, clock: clock, store: store)
        #expect(try await counters.next(prefix: "A") == "A001")
        #expect(try await counters.next(prefix: "A") == "A002")
        clock.advance(to: try local("2027-03-29 23:30"))
        #expect(try await counters.next(prefix: "A") == "A003")
        #expect(try await counters.reset() == ["A": 3])
        // Restarted while the clock is still before midnight: the numbers saved for the next day go on too.
        let restarted = TicketCounters(settings: settings, timeZone: shanghai, clock: clock, store: store)
        #expect(try await restarted.next(prefix: "A") == "A004")
        clock.advance(to: try local("2027-03-31 08:45"))
        #expect(try await restarted.reset() == [:])
        #expect(try await restarted.next(prefix: "A") == "A001")
        // A clock days ahead, corrected: the holder of A001 may still wait in the hall, so numbering goes on.
        let ahead = ManualHallClock(now: try local("2027-04-05 10:00"))
        let wrong = TicketCounters(settings: settings, timeZone: shanghai, clock: ahead)
        #expect(try await wrong.next(prefix: "A") == "A001")
        ahead.advance(to: try local("2027-04-02 10:00"))
        #expect(try await wrong.next(prefix: "A") == "A002")
        // Once the clock has passed that day, the counters start again.
        ahead.advance(to: try local("2027-04-06 08:45"))
        #expect(try await wrong.next(prefix: "A") == "A001")
    }

    /// A box without a clock battery reboots at its last saved time, or at 1970, until NTP answers (if it ever does).
    @Test func aRestartWithTheClockBehindTheLastTicketDayIssuesNoNumberTwice() async throws {
        let store = InMemoryTicketCounterStore()
        let settings = TicketSettings(prefixes: ["A"])
        let monday = ManualHallClock(now: try local("2027-03-29 09:30"))
        let before = TicketCounters(settings: settings, timeZone: shanghai, clock: monday, store: store)
        for _ in 1...40 { _ = try await before.next(prefix: "A") }
        for behind in ["2027-03-26 10:00", "1970-01-01 08:00"] {
            let restarted = TicketCounters(settings: settings, timeZone: shanghai,
                                           clock: ManualHallClock(now: try local(behind)), store: store)
            #expect(try await restarted.next(prefix: "A") == (behind.hasPrefix("1970") ? "A042" : "A041"), "\(behind)")
        }
    }

    @Test func savesCommittedOutOfOrderKeepTheHigherNumber() async throws {
        let folder = try TemporaryDirectory()
        let outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
        // Two kiosks at once: A6's save commits before A5's.
        try await outbox.saveTicketNumber(day: "2026-10-05", prefix: "A", number: 6)
        try await outbox.saveTicketNumber(day: "2026-10-05", prefix: "A", number: 5)
        #expect(try await outbox.ticketNumbers(day: "2026-10-05") == ["A": 6])
    }

    @Test func numbersGrowPastTheirWidthInsteadOfWrapping() async throws {
        let clock = ManualHallClock(now: try local("2026-10-05 10:00"))
        let store = InMemoryTicketCounterStore()
        await store.save(day: try #require(HallDate("2026-10-05")), prefix: "A", number: 998)
        let counters = TicketCounters(settings: TicketSettings(prefixes: ["A"]), timeZone: shanghai, clock: clock,
                                      store: store)
        #expect(try await counters.next(prefix: "A") == "A999")
        #expect(try await counters.next(prefix: "A") == "A1000")
    }

    @Test func concurrentTicketsNeverShareANumber() async throws {
        let clock = ManualHallClock(now: try local("2026-10-05 10:00"))
        let counters = TicketCounters(settings: TicketSettings(prefixes: ["A"], digits: 2), timeZone: shanghai,
                                      clock: clock)
        // All fifty arrive before the day's numbers are loaded: they must share that one load.
        let issued = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 1...50 { group.addTask { try await counters.next(prefix: "A") } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(issued) == Set((1...50).map { $0 < 10 ? "A0\($0)" : "A\($0)" }))
    }

    @Test func anUnknownPrefixIsRefusedWithTheConfiguredOnes() async throws {
        let clock = ManualHallClock(now: try local("2026-10-05 10:00"))
        let counters = TicketCounters(settings: TicketSettings(prefixes: ["A", "B"], priorityPrefixes: ["V"]),
                                      timeZone: shanghai, clock: clock)
        let error = await #expect(throws: TicketError.self) { try await counters.next(prefix: "X") }
        #expect(error?.code == .unknownPrefix)
        #expect(error?.description == "unknown ticket prefix 'X' (configured: A, B; 绿色通道: V)")
    }

    // MARK: Configuration

    @Test func theConfigurationReadsHoursHolidaysWorkingDaysAndTickets() throws {
        let config = try hallDay()
        let morning = try #require(OpenInterval("09:00-12:00"))
        let afternoon = try #require(OpenInterval("13:30-17:00"))
        let weekday = [morning, afternoon]
        let expected = HallDayConfig(
            hours: OpeningHours(
                timeZone: shanghai,
                weekly: [.monday: weekday, .tuesday: weekday, .wednesday: weekday, .thursday: weekday,
                         .friday: weekday, .saturday: [morning]],
                holidays: [try #require(HallDate("2026-10-07"))],
                workingDays: [try #require(HallDate("2026-10-11")): .monday]),
            checkBeforeOpening: .seconds(15 * 60), longestBreak: .seconds(2 * 3600), lateCallHold: .seconds(45 * 60),
            tickets: TicketSettings(prefixes: ["A", "B", "C"], priorityPrefixes: ["V"], digits: 3))
        #expect(config == expected)
        #expect(try ConfigLoader.parseHallDay(yaml: "{}", file: "hall.yaml", timeZone: shanghai) == nil)
    }

    @Test func anIntervalThatClosesBeforeItOpensIsReportedAtItsItem() throws {
        let issues = try configIssues("""
            hours:
              monday-friday: ["09:00-12:00", "17:00-09:00"]
            """)
        #expect(issues == ["hall.yaml:2:34: hours.monday-friday[1]: '17:00-09:00' closes before it opens "
                            + "(an interval lies within one day, e.g. 09:00-17:00)"])
    }

    @Test func anUnknownWeekdayIsReportedWithTheKnownKeys() throws {
        let issues = try configIssues("""
            hours:
              monday-friday: ["09:00-17:00"]
              sundey: ["09:00-12:00"]
            """)
        #expect(issues == ["hall.yaml:3:3: hours.sundey: unknown weekday or key (weekdays: monday … sunday, or a "
                            + "range such as monday-friday; other keys: holidays, working-days, "
                            + "check-before-opening-minutes, longest-break-minutes, late-call-minutes)"])
    }

    @Test func aDateThatDoesNotExistIsReported() throws {
        let issues = try configIssues("""
            hours:
              monday-friday: ["09:00-17:00"]
              holidays: [2026-10-01, 2026-02-30]
            """)
        #expect(issues == ["hall.yaml:3:26: hours.holidays[1]: '2026-02-30' is not a date YYYY-MM-DD "
                            + "(e.g. 2026-10-01)"])
    }

    @Test func otherMistakesAreEachReportedOnce() throws {
        let issues = try configIssues("""
            hours:
              monday-friday: ["09:00-13:00", "12:00-17:00"]
              saturday-monday: ["09:00-12:00"]
              working-days: {2026-10-11: sunday, 2026-10-12: someday}
            tickets:
              prefixes: [A, b]
              priority-prefixes: [A]
              digits: 9
            """)
        #expect(issues == [
            "hall.yaml:2:34: hours.monday-friday[1]: '12:00-17:00' overlaps '09:00-13:00'",
            "hall.yaml:3:3: hours.saturday-monday: unknown weekday or key (weekdays: monday … sunday, or a range "
                + "such as monday-friday; other keys: holidays, working-days, check-before-opening-minutes, "
                + "longest-break-minutes, late-call-minutes)",
            "hall.yaml:4:18: hours.working-days.2026-10-11: 2026-10-11 is worked as sunday, which has no opening hours",
            "hall.yaml:4:50: hours.working-days.2026-10-12: 'someday' is not a weekday (monday … sunday): the day "
                + "whose hours 2026-10-12 is worked with",
            "hall.yaml:6:3: tickets: prefix 'A' is given twice",
            "hall.yaml:6:17: tickets.prefixes[1]: 'b' is not a ticket prefix (1 to 3 capital letters, e.g. A or VIP)",
            "hall.yaml:8:11: tickets.digits: 9 is out of range 1…6",
        ], "in the file's order")
    }

    // MARK: Helpers

    func configIssues(_ text: String) throws -> [String] {
        do {
            _ = try ConfigLoader.parseHallDay(yaml: text, file: "hall.yaml", timeZone: shanghai)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    // MARK: A clock that cannot be trusted

    /// A day over the hall's hours on a clock reading `now` that no NTP keeps, after a run that recorded `lastRecorded`.
    func unsynchronisedDay(at now: String, lastRecorded: String) throws -> (ManualHallClock, DayLog, HallDay) {
        let clock = ManualHallClock(now: try local(now))
        clock.setSynchronised(false)
        let log = DayLog(clock: clock)
        let day = HallDay(hours: try #require(try hallDay().hours), clock: clock, lastRecorded: try local(lastRecorded),
                          actions: log)
        return (clock, log, day)
    }

    @Test func aClockThatBootsBehindTheLastRecordedDayHoldsTheDayUntilItIsSet() async throws {
        // A dead clock battery: 1970-01-01 was a Thursday, 10:00 in opening hours.
        let (clock, log, day) = try unsynchronisedDay(at: "1970-01-01 10:00", lastRecorded: "2026-10-05 17:30")
        let stop = StopSignal()
        async let running: Void = day.run(until: stop)

        // It looks at the clock again every 30 s and finds it still behind: no board switched, no check.
        for _ in 0..<3 { clock.advance(to: await clock.nextDeadline()) }
        _ = await clock.nextDeadline()
        #expect(await log.entries == ["1970-01-01T02:00:00Z held: reads 1970-01-01T02:00:00Z, last recorded 2026-10-05T09:30:00Z"])

        // The technician sets the clock: Tuesday 10:00, the hall open since 09:00.
        clock.advance(to: try local("2026-10-06 10:00"))
        try await advance(clock, to: try local("2026-10-07 00:00"))
        stop.stop()
        await running
        #expect(await log.entries == [
            "1970-01-01T02:00:00Z held: reads 1970-01-01T02:00:00Z, last recorded 2026-10-05T09:30:00Z",
            "2026-10-06T02:00:00Z goes on: pastLastRecorded",
            "2026-10-06T02:00:00Z opened",
            "2026-10-06T04:00:00Z break until 2026-10-06T05:30:00Z",
            "2026-10-06T05:30:00Z opened",
            "2026-10-06T09:00:00Z closed",
        ])
    }

    /// The last run recorded Wednesday under a clock a day ahead; it now reads Tuesday, rightly, with no NTP yet. It
    /// goes on once NTP synchronises it (without stepping it), or once the technician sets it (the gateway sees the
    /// step against its monotonic clock).
    @Test(arguments: [ClockTrust.synchronised, .set])
    func aClockThatRanAheadBeforeGoesOnOnceTrusted(_ trust: ClockTrust) async throws {
        let (clock, log, day) = try unsynchronisedDay(at: "2026-10-06 10:00", lastRecorded: "2026-10-08 10:00")
        let stop = StopSignal()
        async let running: Void = day.run(until: stop)
        // Looked again at 10:00:30, still held.
        clock.advance(to: await clock.nextDeadline())
        let nextLook = await clock.nextDeadline()
        if trust == .synchronised {
            // Seen at the next look.
            clock.setSynchronised(true)
            clock.advance(to: nextLook)
        } else {
            // The step is seen as it is made: the held day looks at once.
            await day.clockWasSet()
        }
        _ = await clock.nextDeadline()
        stop.stop()
        await running
        let wentOn = trust == .synchronised ? "2026-10-06T02:01:00Z" : "2026-10-06T02:00:30Z"
        #expect(await log.entries == [
            "2026-10-06T02:00:00Z held: reads 2026-10-06T02:00:00Z, last recorded 2026-10-08T02:00:00Z",
            "\(wentOn) goes on: \(trust)",
            "\(wentOn) opened",
        ])
    }

    @Test(arguments: [
        // Kept by NTP: trusted, whatever the last run recorded.
        (synchronised: true, lastRecorded: "2026-10-08 10:00"),
        // Not kept, but on the day last recorded (a power cut, the clock restored from its last saved time).
        (synchronised: false, lastRecorded: "2026-10-06 11:00"),
    ])
    func aClockNotBehindTheLastRecordedDayIsTakenAsItReads(synchronised: Bool, lastRecorded: String) async throws {
        let hours = try #require(try hallDay().hours)
        let clock = ManualHallClock(now: try local("2026-10-06 10:00"))
        clock.setSynchronised(synchronised)
        let log = DayLog(clock: clock)
        let day = HallDay(hours: hours, clock: clock, lastRecorded: try local(lastRecorded), actions: log)
        try await drive(day, clock, until: try local("2026-10-06 12:00"))
        #expect(await log.entries == ["2026-10-06T02:00:00Z opened", "2026-10-06T04:00:00Z break until 2026-10-06T05:30:00Z"])
    }

    @Test func theSystemClockIsSynchronisedAsTheKernelSays() async throws {
        // adjtimex(2) called by Python's ctypes (a zeroed struct timex: read only): TIME_ERROR (5) while unsynchronised.
        let kernel = try await run("/usr/bin/env", ["python3", "-c", """
            import ctypes
            state = ctypes.CDLL(None, use_errno=True).adjtimex(ctypes.create_string_buffer(512))
            print("synchronised" if state not in (-1, 5) else "unsynchronised")
            """])
        let expected = try #require(kernel.status == 0 ? kernel.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) : nil,
                                    "\(kernel.standardError)")
        #expect((SystemHallClock().isSynchronised ? "synchronised" : "unsynchronised") == expected)
    }

    /// Runs `day` from the clock's current instant to `end`, stepping the clock to each deadline it sleeps until.
    func drive(_ day: HallDay, _ clock: ManualHallClock, until end: Date) async throws {
        let stop = StopSignal()
        async let running: Void = day.run(until: stop)
        try await advance(clock, to: end)
        stop.stop()
        await running
    }

    /// Steps the clock deadline by deadline up to `end`; returns once the day sleeps past `end`, its actions done.
    func advance(_ clock: ManualHallClock, to end: Date) async throws {
        while true {
            let deadline = await clock.nextDeadline()
            guard deadline <= end else { break }
            clock.advance(to: deadline)
        }
        clock.advance(to: end)
        // Whatever `end` itself woke has acted once the day sleeps again.
        _ = await clock.nextDeadline()
    }
}

/// Records each action with the instant the clock read when it came.
actor DayLog: HallDayActions {
    let clock: ManualHallClock
    let counters: TicketCounters?
    private(set) var entries: [String] = []

    init(clock: ManualHallClock, counters: TicketCounters? = nil) {
        self.clock = clock
        self.counters = counters
    }

    func beforeOpening(day: DateComponents) async {
        let date = HallDate(year: day.year ?? 0, month: day.month ?? 0, day: day.day ?? 0)
        var entry = "\(iso(clock.now)) beforeOpening \(date.map(String.init(describing:)) ?? "\(day)")"
        if let counters {
            do {
                try await counters.reset()
                entry += " (counters reset)"
            } catch {
                entry += " (reset failed: \(error))"
            }
        }
        entries.append(entry)
    }

    func opened(greeting: Bool, since: Date?) async { entries.append("\(iso(clock.now)) opened") }

    func breakStarted(reopensAt: Date) async { entries.append("\(iso(clock.now)) break until \(iso(reopensAt))") }

    func closed(since: Date?) async { entries.append("\(iso(clock.now)) closed") }

    func clockDoubted(reads: Date, lastRecorded: Date) async {
        entries.append("\(iso(clock.now)) held: reads \(iso(reads)), last recorded \(iso(lastRecorded))")
    }

    func clockTrusted(reads: Date, because reason: ClockTrust) async {
        entries.append("\(iso(clock.now)) goes on: \(reason)")
    }
}

/// `2026-10-05T00:45:00Z`.
func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

/// What reads as a citizen's mobile or resident ID number in free text, staff ids and services.
struct PersonalNumberTests {
    @Test(arguments: [
        "请13812345678到5号窗口", "138 1234 5678", "138-1234-5678", "+86 138 0013 8000", "8613800138000",
        "窗口5 13812345678", "A023 110101199003071234", "11010119900307123X", "110101900307123",
        "１３８１２３４５６７８", "138－1234－5678", "138.1234.5678", "138．1234．5678",
        // A resident ID as people group it (the trial's board showed these).
        "身份证110105 19491231 002X", "110105-19491231-002X", "110105 1949 1231 002X", "身份证１１０１０５１９４９１２３１００２Ｘ",
        // From a security trial: other layouts of the same numbers.
        "138_1234_5678", "1381234 5678", "138 - 1234 - 5678", "138\u{00A0}1234\u{00A0}5678", "1 3 8 1 2 3 4 5 6 7 8",
        "一三八一二三四五六七八", "窗口5 138 1234 5678", "11010119900307 7774", "110101_19900307_7774", "110105_1949_1231_002X", "110105 20050101 008 X", "1 1 0 1 0 5 2 0 0 5 0 1 0 1 0 0 8 X",
    ])
    func readsAsAPhoneOrIDNumber(_ text: String) {
        #expect(CommandCenter.holdsPhoneOrIDNumber(text))
    }

    @Test(arguments: [
        "欢迎光临 服务热线12345", "咨询电话 0571-87654321-123", "001 002 003 004 005", "A023", "S0517", "请A023号到3号窗口",
        "12345678901", "2026-12-02 09:00", "v1.2.3 build 138.1234", "版本 138.1234.56789", "订单 123456 12345678",
        "办公时间 9:00-12:00 13:30-17:00", "001 002 003 004 005 006", "第一窗口 第二窗口", "2026-12-02 09:00-17:00",
        // From a second read: lists, times, versions and addresses whose digits happen to add up to 11 or 18.
        "窗口 1 3 5 7 9 11 13 15 办理社保", "1 4 5 6 7 8 9 10 11号窗口暂停", "13.30-17.30 9.00-12.00", "周一 9.00-12.00 1.30-5.00",
        "固件 1.13.0-20240117", "v2.15.0.20230117", "192.168.10.100", "172.16.100.100", "1999-12-31 123", "1733318400-2",
        "310012 2024-12-04 0900", "案号 330106-20241204-0012", "310012 20241204 0930",
    ])
    func doesNotReadAsOne(_ text: String) {
        #expect(!CommandCenter.holdsPhoneOrIDNumber(text))
    }

    @Test func aHallWithoutBoardsSaysSoWhenItCloses() throws {
        let closed = CloudEvent(
            id: "boards-off-1", source: "/halls/hall-1/gateway", type: HallEventType.hallClosed,
            time: try #require(EventTime.parse("2026-12-01T09:00:00Z")), subject: nil,
            data: .command(CommandExecuted(commandId: "boards-off-1", command: "boards-off", window: nil, ticket: nil,
                                           result: "done", devices: [])))
        let line = EventSummary.line(closed, timeZone: try #require(TimeZone(identifier: "Asia/Shanghai")))
        #expect(line.contains("boards-off: done (no devices)"), "\(line)")
    }

    @Test func anOpeningOneBoardMissedSaysHowManyMissedIt() throws {
        // From a duty officer's trial: "boards-on: device-offline" with two of three boards on read as a dark hall.
        let opened = CloudEvent(
            id: "boards-on-1", source: "/halls/hall-1/gateway", type: HallEventType.hallOpened,
            time: try #require(EventTime.parse("2026-12-01T01:00:00Z")), subject: nil,
            data: .command(CommandExecuted(commandId: "boards-on-1", command: "boards-on", window: nil, ticket: nil,
                                           result: "device-offline", devices: [
                                               .init(device: "board-w01", result: "done", detail: nil),
                                               .init(device: "board-w02", result: "device-offline", detail: nil),
                                               .init(device: "board-w03", result: "done", detail: nil),
                                           ])))
        let line = EventSummary.line(opened, timeZone: try #require(TimeZone(identifier: "Asia/Shanghai")))
        #expect(line.contains("boards-on: device-offline for 1 of 3 (board-w01 done, board-w02 device-offline, board-w03 done)"),
                "\(line)")
        #expect(EventSummary.needsAttention(opened), "logged at warning")
    }

    @Test func aPassedCheckSaysHowManyDevicesAnsweredNotHowManyWereChecked() throws {
        // From a trial: the log and `gatewayd events` said "passed: 14 devices answer" of a check that heard 13.
        let check = CloudEvent(
            id: "check-1", source: "/halls/hall-1/gateway", type: HallEventType.deviceCheck,
            time: try #require(EventTime.parse("2026-12-01T00:45:00Z")), subject: nil,
            data: .deviceCheck(DeviceCheckReport(passed: true, problems: [], devicesChecked: 14, devicesAnswering: 13)))
        let line = EventSummary.line(check, timeZone: try #require(TimeZone(identifier: "Asia/Shanghai")))
        #expect(line.contains("passed: 13 of 14 devices answer"), "\(line)")
    }

    /// From a second read: a restart outside hours switched every board off twice (first heard after the start read
    /// as "answers again"); a board the day's turn missed must still be switched when it is first heard.
    @Test func boardsAnswerAgainOnlyAfterTheyWereOfflineOrMissedTheTurn() {
        func looks(_ states: [Bool?], switched: Set<String>?) -> [[String]] {
            var watch = BoardsWatch(boards: ["b1"])
            return states.map { online in
                watch.back(in: [DeviceState(device: "b1", bus: "line", online: online, lastSeen: nil),
                                DeviceState(device: "pad", bus: "line", online: online, lastSeen: nil)], switched: switched)
            }
        }
        #expect(looks([nil, true, true], switched: ["b1"]) == [[], [], []], "first heard, the turn reached it: a restart")
        #expect(looks([nil, true, true], switched: []) == [[], ["b1"], []], "first heard after the turn missed it")
        #expect(looks([nil, true], switched: nil) == [[], []], "no turn yet: the first will reach it")
        #expect(looks([true, false, true], switched: ["b1"]) == [[], [], ["b1"]], "back after it was offline")
    }

    @Test func aBreakSaysWhenTheWindowsOpenAgainAndIsLunchOnlyAtLunch() {
        #expect(GatewayHallActions.breakText(reopensAt: "13:30") == "午休 13:30恢复办理")
        #expect(GatewayHallActions.breakText(reopensAt: "16:30") == "暂停办理 16:30恢复", "a break in the afternoon is no lunch")
    }

    @Test func aPassedCheckSaysWhatToSeeTo() throws {
        // From a second read: the morning check's near-empty roll was in its report only, said by no log or events line.
        let check = CloudEvent(
            id: "check-2", source: "/halls/hall-1/gateway", type: HallEventType.deviceCheck,
            time: try #require(EventTime.parse("2026-12-01T00:45:00Z")), subject: nil,
            data: .deviceCheck(DeviceCheckReport(
                passed: true, problems: [], warnings: ["printer printer-1: paper near its end: load a new roll"],
                devicesChecked: 3, devicesAnswering: 3)))
        let line = EventSummary.line(check, timeZone: try #require(TimeZone(identifier: "Asia/Shanghai")))
        #expect(line.contains("passed: 3 of 3 devices answer; to see to: printer printer-1: paper near its end"), "\(line)")
    }
}
