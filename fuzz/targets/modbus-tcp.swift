// libFuzzer target: Modbus TCP decoder in both roles; every frame decoded must encode back to bytes that
// decode to the same frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    for role in [ModbusRole.server, .client] {
        var decoder = ModbusTCPDecoder(role: role)
        exercise(&decoder, input)
        var frames = decoder.decode(input)
        frames += decoder.flush()
        for frame in frames {
            guard let bytes = try? frame.encode() else { preconditionFailure("a decoded frame does not encode") }
            var again = ModbusTCPDecoder(role: role)
            precondition(again.decode(bytes) == [frame], "re-encoded frame decodes differently")
        }
    }
    return 0
}
