// libFuzzer target for QSystemBoardDecoder.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    var decoder = QSystemBoardDecoder()
    exercise(&decoder, input)

    // Chunking must not matter, and every decoded frame must survive a re-encode.
    var whole = QSystemBoardDecoder()
    var single = QSystemBoardDecoder()
    let frames = whole.decode(input) + whole.flush()
    precondition(frames == input.flatMap { single.decode([$0]) } + single.flush(), "chunking changed the frames")
    for frame in frames {
        var again = QSystemBoardDecoder()
        precondition(again.decode(frame.encode()) == [frame], "re-encoded frame did not decode to itself")
    }
    return 0
}
