import Foundation
public import Protocols

/// Evaluator pads and callers on one simulated FF 68 RS-485 bus.
///
/// Like the real devices, a key frame is sent again every `repeatInterval` until the host echoes it,
/// up to `maximumRepeats` times. Each device's LED shows what the host last sent it.
public final class MockFF68Bus: Sendable {
    private struct State {
        var decoder = FF68Decoder()
        /// Frames sent and not yet echoed, by address.
        var unacknowledged: [UInt8: FF68Frame] = [:]
        var acknowledged: [FF68Frame] = []
        var displays: [UInt8: String] = [:]
        var beeps: [UInt8: Int] = [:]
        /// Host frames that were not echoes, display or beep (evaluation requests, service levels), in order.
        var commands: [FF68Frame] = []
        var ignoreEchoes = false
        /// Echoes that arrived while they were being ignored.
        var echoesIgnored = 0
        var running = true
    }

    private let state: Locked<State>
    private let line: MockLine
    /// How often an unacknowledged frame is sent again.
    public static let repeatInterval: Duration = .milliseconds(300)

    /// Opens the bus; `echoing` as a two-wire adapter that returns what the host sends; `pacing` moves bytes at the
    /// line's wire time (see `MockLine`).
    public init(echoing: Bool = false, pacing: WirePacing? = nil) throws {
        let state = Locked(State())
        self.state = state
        line = try MockLine(echoing: echoing, pacing: pacing) { bytes in
            state { state in
                for frame in state.decoder.decode(bytes) {
                    if let display = frame.callerDisplay {
                        state.displays[frame.address] = display.text
                    } else if frame.function == FF68Function.beep {
                        state.beeps[frame.address, default: 0] += 1
                    } else if let sent = state.unacknowledged[frame.address], frame == sent.acknowledgement {
                        if state.ignoreEchoes {
                            state.echoesIgnored += 1
                        } else {
                            state.unacknowledged[frame.address] = nil
                            state.acknowledged.appendKeepingNewest(sent)
                        }
                    } else if !state.acknowledged.contains(where: { $0.acknowledgement == frame }) {
                        // Not an echo (nor a late second echo of a frame already taken).
                        state.commands.appendKeepingNewest(frame)
                    }
                }
            }
            return []
        }
        Thread.detachNewThread { [line, state] in
            while state({ $0.running }) {
                Thread.sleep(forTimeInterval: 0.3)
                for frame in state({ Array($0.unacknowledged.values) }) { line.send(frame.encode()) }
            }
        }
    }

    /// The path the gateway opens.
    public var devicePath: String { line.devicePath }

    /// A citizen presses a key on the pad at `address`.
    public func pressEvaluatorKey(_ key: UInt8, address: UInt8) { send(.evaluatorKeyPress(address: address, key: key)) }

    /// A staff member presses keys on the caller at `address` (a digit then 确认, or one key).
    public func pressCallerKeys(_ keys: [UInt8], address: UInt8) {
        send(FF68Frame(address: address, function: FF68Function.assumedCallerKey, data: keys))
    }

    /// Sends raw bytes (noise, broken frames).
    public func sendRaw(_ bytes: [UInt8]) { line.send(bytes) }

    /// While true, echoes are not taken: devices keep repeating (as when the echo is lost on the wire).
    public func ignoreEchoes(_ ignore: Bool) { state { $0.ignoreEchoes = ignore } }

    /// How many echoes arrived while they were ignored: each one the host's answer to a frame or its repeat.
    public var echoesIgnored: Int { state { $0.echoesIgnored } }

    /// How many bytes the host has sent.
    public var bytesFromHost: Int { line.byteCountFromHost }

    /// Frames the host has echoed, in order (the newest `mockHistoryLimit`).
    public var acknowledged: [FF68Frame] { state { $0.acknowledged } }

    /// Frames still waiting for their echo.
    public var unacknowledgedCount: Int { state { $0.unacknowledged.count } }

    /// What the caller at `address` shows.
    public func display(address: UInt8) -> String? { state { $0.displays[address] } }

    /// The host's other frames to the device at `address` (an evaluation request: FUNC 01, data 0B), in order.
    public func commands(address: UInt8) -> [FF68Frame] { state { $0.commands.filter { $0.address == address } } }

    /// How often the caller at `address` beeped.
    public func beeps(address: UInt8) -> Int { state { $0.beeps[address] ?? 0 } }

    /// Stops the devices.
    public func stop() {
        state { $0.running = false }
        line.stop()
    }

    private func send(_ frame: FF68Frame) {
        state { $0.unacknowledged[frame.address] = frame }
        line.send(frame.encode())
    }
}

/// QSystem operator boxes and number boards on one simulated RS-485 line.
public final class MockQSystemLine: Sendable {
    private struct State {
        var boardDecoder = QSystemBoardDecoder()
        var signalDecoder = QSystemSignalDecoder()
        var boards: [UInt8: QSystemDisplayFrame] = [:]
        var lamps: [UInt8: QSystemBoxSignal] = [:]
    }

    private let state: Locked<State>
    private let line: MockLine

    /// Opens the line; `pacing` moves bytes at the line's wire time (see `MockLine`).
    public init(pacing: WirePacing? = nil) throws {
        let state = Locked(State())
        self.state = state
        line = try MockLine(pacing: pacing) { bytes in
            state { state in
                for frame in state.boardDecoder.decode(bytes) { state.boards[frame.address] = frame }
                for frame in state.signalDecoder.decode(bytes) { state.lamps[frame.address] = frame.signal }
            }
            return []
        }
    }

    /// The path the gateway opens.
    public var devicePath: String { line.devicePath }

    /// An operator presses a key on the box at `address`.
    public func press(_ key: QSystemKey, address: UInt8) { line.send(QSystemKeyFrame(address: address, key: key).encode()) }

    /// What the board at `address` shows, and how it blinks.
    public func board(address: UInt8) -> QSystemDisplayFrame? { state { $0.boards[address] } }

    /// The last signal the box at `address` got.
    public func lamp(address: UInt8) -> QSystemBoxSignal? { state { $0.lamps[address] } }

    /// Stops the devices.
    public func stop() { line.stop() }
}
