// Onbon BX decoder under libFuzzer. Besides the buffer bounds `exercise` checks, every decoded packet must
// re-encode to a frame that decodes to the same packet, and parsing its data as a request or reply must not trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    var decoder = OnbonDecoder(acceptsUncheckedFrames: size % 2 == 0)
    exercise(&decoder, input)

    var checker = OnbonDecoder(acceptsUncheckedFrames: true)
    for packet in checker.decode(input) + checker.flush() {
        var again = OnbonDecoder(acceptsUncheckedFrames: true)
        precondition(again.decode(packet.encode()) == [packet], "re-encoded packet does not decode to itself")
        if let request = OnbonRequest(data: packet.data), let bytes = try? request.encode() {
            precondition(OnbonRequest(data: bytes) == request, "request does not round-trip")
        }
        _ = OnbonReply(data: packet.data)
    }
    return 0
}
