// libFuzzer target for QSystemBoxDecoder (and the box-side QSystemSignalDecoder, same frame shape).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    var decoder = QSystemBoxDecoder()
    exercise(&decoder, input)
    var signals = QSystemSignalDecoder()
    exercise(&signals, input)

    // Chunking must not matter, and every decoded frame must survive a re-encode.
    var whole = QSystemBoxDecoder()
    var single = QSystemBoxDecoder()
    let frames = whole.decode(input) + whole.flush()
    precondition(frames == input.flatMap { single.decode([$0]) } + single.flush(), "chunking changed the frames")
    for frame in frames {
        var again = QSystemBoxDecoder()
        precondition(again.decode(frame.encode()) == [frame], "re-encoded frame did not decode to itself")
    }
    return 0
}
