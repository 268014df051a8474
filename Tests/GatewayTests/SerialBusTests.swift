@testable import DeviceGateway
import Foundation
import MockDevices
import Protocols
import Testing

/// The bus engine on a real pseudo-terminal, with a minimal line protocol of the tests' own: `02 ADDR KIND VALUE 03`.
/// KIND 'K' is an unprompted key press (acknowledged with `06 ADDR`), 'S' a status answer to the poll
/// `05 ADDR`, 'A' the answer to a display command `11 ADDR text… 00`.
struct TinyDecoder: FrameDecoder {
    private var buffer: [UInt8] = []
    var discardedByteCount = 0
    var bufferedByteCount: Int { buffer.count }
    let maximumBufferedBytes = 5

    mutating func decode(_ bytes: some Sequence<UInt8>) -> [[UInt8]] {
        buffer += bytes
        var frames: [[UInt8]] = []
        while let start = buffer.firstIndex(of: 0x02) {
            discardedByteCount += start
            buffer.removeFirst(start)
            guard buffer.count >= 5 else { break }
            if buffer[4] == 0x03 { frames.append(Array(buffer[0..<5])); buffer.removeFirst(5) } else { buffer.removeFirst() }
        }
        if buffer.first != 0x02 { discardedByteCount += buffer.count; buffer.removeAll() }
        return frames
    }

    mutating func flush() -> [[UInt8]] {
        discardedByteCount += buffer.count
        buffer.removeAll()
        return []
    }
}

struct TinyDriver: BusDriver {
    let devices: [DeviceConfig]
    let hallId = "h"

    func makeDecoder() -> TinyDecoder { TinyDecoder() }

    /// Devices that only speak unprompted.
    var unprompted: Set<String> = []
    /// Whether a command drops what the line holds before it goes out, as an Onbon command does.
    var commandsDiscardStaleInput = false
    /// When set, a device confirms a command only at this poll after the command's answer, as a Modbus board does.
    var confirmsAtPoll: Int?
    /// Frames a command is sent as, each answered (the last one's text ends in `#`), as a board's text and its mode.
    var framesPerCommand = 1
    /// Commands answered and not yet confirmed, by device: their key and the polls since.
    var unconfirmed: [String: (key: Int, polls: Int)] = [:]
    var lastKey = 0

    mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] {
        guard !unprompted.contains(device.id) else { return [] }
        return [LineRequest(device: device.id, bytes: [0x05, UInt8(device.address)], expectsAnswer: true, purpose: "status")]
    }

    mutating func handle(_ frame: [UInt8], inFlight request: LineRequest?, at time: Date) -> LineReaction {
        guard let device = devices.first(where: { $0.address == Int(frame[1]) }) else { return LineReaction() }
        switch frame[2] {
        case UInt8(ascii: "K"):
            let event = CloudEvent(
                id: "key-\(device.id)-\(frame[3])", source: EventSource.device(hall: hallId, device: device.id),
                type: HallEventType.callerKeyPressed, time: time, subject: nil,
                data: .callerKey(CallerKeyPressed(window: device.window ?? "", action: "call-next", key: Int(frame[3]))))
            return LineReaction(events: [event], afterCommit: [LineRequest(device: device.id, bytes: [0x06, frame[1]], expectsAnswer: false, purpose: "acknowledge")], from: device.id)
        case UInt8(ascii: "R"):
            return LineReaction(from: device.id, answersRequest: request?.device == device.id, refusal: "refused with code \(frame[3])")
        case UInt8(ascii: "A") where confirmsAtPoll != nil && request?.device == device.id:
            lastKey += 1
            unconfirmed[device.id] = (lastKey, 0)
            return LineReaction(from: device.id, answersRequest: true,
                                holdsCommand: CommandHold(key: lastKey, verdictWithinPolls: 3))
        default:
            var verdicts: [CommandVerdict] = []
            if var waiting = unconfirmed[device.id], let confirmsAtPoll {
                waiting.polls += 1
                unconfirmed[device.id] = waiting.polls < confirmsAtPoll ? waiting : nil
                if waiting.polls >= confirmsAtPoll { verdicts = [CommandVerdict(device: device.id, key: waiting.key, failure: nil)] }
            }
            return LineReaction(from: device.id, answersRequest: request?.device == device.id, verdicts: verdicts)
        }
    }

    func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        (1...framesPerCommand).map { frame in
            let last = frame > 1 && frame == framesPerCommand ? "#" : ""
            return LineRequest(
                device: device.id, bytes: [0x11, UInt8(device.address)] + Array(((command.displayText ?? "") + last).utf8) + [0],
                expectsAnswer: true, purpose: framesPerCommand == 1 ? command.name : "\(command.name) frame \(frame)",
                discardsStaleInput: commandsDiscardStaleInput)
        }
    }
}

@Suite struct SerialBusTests {
    let folder: TemporaryDirectory
    let terminal: PseudoTerminal
    let outbox: Outbox
    let devices = [
        DeviceConfig(id: "caller-1", profile: "tiny", bus: "line", address: 1, window: "1"),
        DeviceConfig(id: "caller-2", profile: "tiny", bus: "line", address: 2, window: "2"),
    ]

    init() throws {
        folder = try TemporaryDirectory()
        terminal = try PseudoTerminal()
        outbox = try Outbox.open(path: folder.file("outbox.sqlite"), logger: CapturedLog().logger)
    }

    /// A device end of the line that answers polls from the listed addresses and records what it got.
    final class DeviceEnd: @unchecked Sendable {
        let fd: Int32
        let answering: Set<UInt8>
        private let lock = NSLock()
        private var received: [UInt8] = []
        private var running = true

        init(fd: Int32, answering: Set<UInt8>) {
            self.fd = fd
            self.answering = answering
            Thread.detachNewThread { self.loop() }
        }

        var bytes: [UInt8] { lock.withLock { received } }
        func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        func stop() { lock.withLock { running = false } }

        private func loop() {
            var buffer = [UInt8](repeating: 0, count: 256)
            while lock.withLock({ running }) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 20) > 0 else { continue }
                let count = read(fd, &buffer, buffer.count)
                guard count > 0 else { continue }
                let chunk = Array(buffer[0..<count])
                lock.withLock { received += chunk }
                var index = 0
                while index + 1 < chunk.count {
                    if chunk[index] == 0x05, answering.contains(chunk[index + 1]) {
                        send([0x02, chunk[index + 1], UInt8(ascii: "S"), 0, 0x03])
                    }
                    if chunk[index] == 0x11, answering.contains(chunk[index + 1]) {
                        send([0x02, chunk[index + 1], UInt8(ascii: "A"), 0, 0x03])
                    }
                    index += 1
                }
            }
        }
    }

    fileprivate func makeBus() -> BusEngine<TinyDriver> {
        let settings = SerialSettings(port: terminal.devicePath)
        let clock = SystemBusClock()
        return BusEngine(
            config: BusConfig(id: "line", transport: .serial(settings), responseTimeout: .milliseconds(100),
                              pollInterval: .milliseconds(100)),
            opener: SerialLinkOpener(settings: settings, clock: clock, label: "bus.line"), clock: clock,
            timing: .serial(settings, silenceBetweenFrames: false), hallId: "h", driver: TinyDriver(devices: devices),
            outbox: outbox, logger: CapturedLog().logger, onCommit: { _ in })
    }

    @Test func anUnpromptedKeyIsCommittedThenAcknowledged() async throws {
        let end = DeviceEnd(fd: terminal.controller, answering: [1, 2])
        defer { end.stop() }
        let bus = makeBus()
        let stop = StopSignal()
        let running = Task { await bus.run(until: stop) }
        // Once the bus polls, the line is open (opening flushes what was there before).
        #expect(await eventually(timeout: .seconds(5)) { end.bytes.contains(0x05) })
        end.send([0xAA, 0x02, 0x01, UInt8(ascii: "K"), 7, 0x03])  // garbage first, then a key on caller 1
        let acknowledged = await eventually(timeout: .seconds(5)) {
            end.bytes.indices.contains { $0 + 1 < end.bytes.count && end.bytes[$0] == 0x06 && end.bytes[$0 + 1] == 0x01 }
        }
        let committed = try await outbox.entries(after: 0, limit: 100).filter { $0.type == HallEventType.callerKeyPressed }
        stop.stop()
        _ = await running.value
        #expect(acknowledged, "the device got its acknowledgement")
        #expect(committed.map(\.id) == ["key-caller-1-7"], "and the key was committed before it")
    }

    @Test func aCommandGoesOutBeforeThePollsAndReturnsWhenAnswered() async throws {
        let end = DeviceEnd(fd: terminal.controller, answering: [1, 2])
        defer { end.stop() }
        let bus = makeBus()
        let stop = StopSignal()
        let running = Task { await bus.run(until: stop) }
        try await bus.send(.call(ticket: "A023", window: "2"), to: "caller-2")
        stop.stop()
        _ = await running.value
        #expect(String(decoding: end.bytes, as: UTF8.self).contains("请A023号到2号窗口"))
    }

    @Test func aSilentDeviceGoesOfflineWhileItsNeighbourStaysOnline() async throws {
        let end = DeviceEnd(fd: terminal.controller, answering: [1])
        defer { end.stop() }
        let bus = makeBus()
        let stop = StopSignal()
        let running = Task { await bus.run(until: stop) }
        let offline = await eventually(timeout: .seconds(5)) {
            (try? await outbox.entries(after: 0, limit: 100))?.contains {
                $0.type == HallEventType.deviceOffline && $0.source.hasSuffix("/caller-2")
            } == true
        }
        await #expect(throws: GatewayError.self) { try await bus.send(.clear, to: "caller-2") }
        stop.stop()
        _ = await running.value
        let statuses = try await outbox.entries(after: 0, limit: 100).filter { $0.type.hasPrefix("hall.device.") }
        #expect(offline)
        #expect(statuses.filter { $0.source.hasSuffix("/caller-1") }.map(\.type) == [HallEventType.deviceOnline])
    }
}
