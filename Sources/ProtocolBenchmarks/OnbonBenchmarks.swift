import Protocols

/// Onbon BX: pings, acknowledgements and real-time text updates (Chinese text, escaped bytes).
func onbonBenchmarks() -> [DecodeBenchmark] {
    let layout = OnbonAreaLayout(areaID: 0, x: 0, y: 0, width: 16, height: 32)
    let texts = ["请A023号到5号窗口", "请B105号到12号窗口办理", "暂停服务 Z[ア]"]
    var frames: [[UInt8]] = texts.compactMap { text in
        guard let command = try? OnbonCommand.showText(OnbonText(text, colour: .red), in: layout),
              let packet = try? OnbonPacket.request(OnbonRequest(command), to: 1)
        else { return nil }
        return packet.encode()
    }
    if let ping = try? OnbonPacket.request(OnbonRequest(.ping), to: 1) { frames.append(ping.encode()) }
    frames.append(OnbonPacket.reply(.acknowledged, from: 1).encode())
    let recorded = stream(of: frames, count: 2_000)
    return [
        DecodeBenchmark(family: "onbon", stream: recorded.bytes, expectedFrames: recorded.frames) { OnbonDecoder() },
    ]
}
