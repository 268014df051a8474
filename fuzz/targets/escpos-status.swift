// libFuzzer target: the printer → host status decoder (real-time replies and automatic status backs).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    var decoder = PrinterStatusDecoder()
    exercise(&decoder, input)
    // Every frame re-encodes to bytes that decode to itself, and interprets without trapping.
    var first = PrinterStatusDecoder()
    for frame in first.decode(input) + first.flush() {
        var again = PrinterStatusDecoder()
        precondition(again.decode(frame.encoded) == [frame], "frame does not re-encode to itself")
        switch frame {
        case .realTime(let reply):
            for request in PrinterStatusRequest.allCases {
                precondition(PrinterCondition(realTimeReply: reply, to: request) != nil, "reply rejected")
            }
        case .automaticStatus(let status):
            _ = PrinterCondition(automaticStatus: status).state
        }
    }
    return 0
}
