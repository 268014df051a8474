// libFuzzer target for FF68Decoder; compiled with Sources/Protocols and fuzz/FuzzSupport.swift by fuzz/run.sh.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    var decoder = FF68Decoder(maximumLength: input.first.map { max($0, 2) } ?? 64)
    exercise(&decoder, input)

    // Chunking must not matter, and every decoded frame must survive a re-encode.
    var whole = FF68Decoder()
    var single = FF68Decoder()
    let frames = whole.decode(input) + whole.flush()
    let singleFrames = input.flatMap { single.decode([$0]) } + single.flush()
    precondition(frames == singleFrames, "chunking changed the frames")
    for frame in frames {
        var again = FF68Decoder()
        precondition(again.decode(frame.encode()) == [frame], "re-encoded frame did not decode to itself")
    }
    return 0
}
