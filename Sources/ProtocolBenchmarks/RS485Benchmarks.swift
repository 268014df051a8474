import Protocols

/// The FF 68 caller/evaluator bus and the QSystem boxes and boards: short frames, the traffic of a busy hall.
func rs485Benchmarks() -> [DecodeBenchmark] {
    var ff68Frames: [[UInt8]] = [
        FF68Frame.callerKeyPress(address: 5, action: .callNext).encode(),
        FF68Frame.callerDisplay(address: 5, FF68CallerDisplay(waitingCount: 12)).encode(),
        FF68Frame.evaluatorKeyPress(address: 6, key: 2).encode(),
        FF68Frame.evaluatorKeyPress(address: 6, key: 2).acknowledgement.encode(),
        FF68Frame.beep(address: 5).encode(),
    ]
    if let ticket = FF68CallerDisplay(ticket: "A023") {
        ff68Frames.append(FF68Frame.callerDisplay(address: 5, ticket).encode())
    }
    let ff68 = stream(of: ff68Frames, count: 4_000)

    let keys = stream(of: QSystemKey.allCases.map { QSystemKeyFrame(address: 0x20, key: $0).encode() }, count: 8_000)

    let boardFrames = ["23", "A105", ""].compactMap { text in
        QSystemDisplayFrame(address: 0x21, mode: text.isEmpty ? .steady : .blinkContinuously, text: text)?.encode()
    }
    let board = stream(of: boardFrames, count: 6_000)

    return [
        DecodeBenchmark(family: "ff68", stream: ff68.bytes, expectedFrames: ff68.frames) { FF68Decoder() },
        DecodeBenchmark(family: "qsystem-box", stream: keys.bytes, expectedFrames: keys.frames) {
            QSystemBoxDecoder()
        },
        DecodeBenchmark(family: "qsystem-board", stream: board.bytes, expectedFrames: board.frames) {
            QSystemBoardDecoder()
        },
    ]
}
