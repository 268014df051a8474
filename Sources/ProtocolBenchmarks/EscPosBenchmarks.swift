import Protocols

/// ESC/POS: tickets as the gateway sends them (host → printer), and status bytes as printers answer (printer → host).
func escPosBenchmarks() -> [DecodeBenchmark] {
    let tickets = (0..<8).map { index in
        Ticket(
            number: "A\(100 + index)", serviceName: ["社保业务", "不动产登记", "公积金", "出入境"][index % 4],
            waitingAhead: index * 3, issuedAt: "2026-11-25 09:\(10 + index)", hallName: "市民服务中心",
            footer: "请留意叫号", qrPayload: index % 2 == 0 ? "https://hall.example/q/A\(100 + index)" : nil
        ).encode()
    }
    // Each ticket decodes to a known number of commands; garbage (NUL, DC3, '7') adds a text frame now and then,
    // so count frames with a reference decode instead of by hand.
    let commandStream = stream(of: tickets, count: 200)
    var reference = EscPosCommandDecoder()
    let commandFrames = reference.decode(commandStream.bytes).count

    let statuses: [[UInt8]] = [[0x12], [0x1E], [0x10, 0x00, 0x00, 0x00], [0x72], [0x38, 0x08, 0x0C, 0x00]]
    let statusStream = stream(of: statuses, count: 20_000)
    var statusReference = PrinterStatusDecoder()
    let statusFrames = statusReference.decode(statusStream.bytes).count

    return [
        DecodeBenchmark(family: "escpos-commands", stream: commandStream.bytes, expectedFrames: commandFrames) {
            EscPosCommandDecoder()
        },
        DecodeBenchmark(family: "escpos-status", stream: statusStream.bytes, expectedFrames: statusFrames) {
            PrinterStatusDecoder()
        },
    ]
}
