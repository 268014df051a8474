import ArgumentParser
import DeviceGateway
import Foundation

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode captured bytes (hex) of a device protocol: which frames, and which bytes are garbage.",
        discussion: "Streams: " + WireInspector.Stream.allCases.map { "\($0.rawValue) (\($0.summary))" }.joined(separator: "; "))

    @Option(name: .shortAndLong, help: "The stream: \(WireInspector.Stream.allCases.map(\.rawValue).joined(separator: ", ")).")
    var stream: String

    @Argument(help: "The bytes in hex, e.g. 'FF 68 03 03 68 03 11 02 16 16'; without it, hex is read from standard input.")
    var hex: [String] = []

    func run() throws {
        guard let kind = WireInspector.Stream(rawValue: stream) else {
            throw ValidationError("unknown stream '\(stream)' (\(WireInspector.Stream.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let text = hex.isEmpty ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : hex.joined(separator: " ")
        guard let bytes = WireInspector.bytes(fromHex: text) else {
            throw ValidationError("not hex bytes: '\(text.prefix(60))'")
        }
        let result = WireInspector.decode(bytes, as: kind)
        for frame in result.frames { print(frame) }
        print("\(result.frames.count) frames, \(result.discardedBytes) of \(bytes.count) bytes not part of any frame")
    }
}
