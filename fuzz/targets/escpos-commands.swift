// libFuzzer target: the host → printer ESC/POS command decoder, starting in either Chinese mode.

/// The commands other than text, and all text joined: what must survive re-encoding (text frames may merge or
/// split differently once the skipped commands between them are gone).
private func essence(_ commands: [EscPosCommand]) -> (commands: [EscPosCommand], text: String) {
    var others: [EscPosCommand] = []
    var text = ""
    for command in commands {
        if case .text(let piece) = command { text += piece } else { others.append(command) }
    }
    return (others, text)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let startsInChineseMode = (input.first ?? 0) & 0x80 != 0
    var decoder = EscPosCommandDecoder(startsInChineseMode: startsInChineseMode)
    exercise(&decoder, input)
    // Whatever came out re-encodes to bytes that decode to the same commands and text.
    var first = EscPosCommandDecoder(startsInChineseMode: startsInChineseMode)
    let commands = first.decode(input) + first.flush()
    var second = EscPosCommandDecoder(startsInChineseMode: startsInChineseMode)
    let again = second.decode(EscPosCommand.encode(commands, startsInChineseMode: startsInChineseMode))
        + second.flush()
    let (expected, decoded) = (essence(commands), essence(again))
    precondition(decoded.commands == expected.commands, "re-encoded commands differ")
    precondition(decoded.text == expected.text, "re-encoded text differs")
    return 0
}
