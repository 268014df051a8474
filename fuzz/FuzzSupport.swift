// Shared by every fuzz target: compiled together with Sources/Protocols into one module.

/// Feeds `data` to a fresh decoder in chunks whose sizes the input itself chooses (its first byte),
/// then flushes; traps if the decoder's buffer ever passes its bound or a flush leaves bytes behind.
func exercise<Decoder: FrameDecoder>(_ decoder: inout Decoder, _ data: UnsafeBufferPointer<UInt8>) {
    guard let first = data.first else { return }
    let chunkSize = Int(first % 31) + 1
    var start = 1
    while start < data.count {
        let end = min(data.count, start + chunkSize)
        _ = decoder.decode(data[start..<end])
        precondition(decoder.bufferedByteCount <= decoder.maximumBufferedBytes, "buffer past its bound")
        start = end
    }
    _ = decoder.flush()
    precondition(decoder.bufferedByteCount == 0, "flush left bytes behind")
}
