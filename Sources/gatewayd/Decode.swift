import ArgumentParser
import DeviceGateway
import Foundation

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode captured bytes of a device protocol: each frame in words, and why the rest is garbage.",
        discussion: """
            Input: hex bytes as arguments or on standard input, or --file with a capture (raw bytes, or a \
            `gatewayd trace --save` capture, whose own streams are used). Exit status 0 when every byte is part of \
            a frame, 1 when the input held garbage (each rejected run is shown with its reason: the checksum \
            expected against the one found, a bad length, no end byte, a capture ending inside a frame), 2 for \
            bad input. Streams: 
            """ + WireInspector.Stream.allCases.map { "\($0.rawValue) (\($0.summary))" }.joined(separator: "; "))

    @Option(
        name: .shortAndLong,
        help: "The stream: \(WireInspector.Stream.allCases.map(\.rawValue).joined(separator: ", ")).")
    var stream: String?

    @Option(help: "Read the bytes from this file: raw bytes, or a capture written by `gatewayd trace --save`.")
    var file: String?

    @Flag(help: "One JSON document: every frame and rejected run with offset, hex and words.")
    var json = false

    @Argument(
        help: "The bytes in hex, e.g. 'FF 68 03 03 68 03 11 02 16 16'; without it, hex is read from standard input.")
    var hex: [String] = []

    // Usage errors here, where ArgumentParser shows this command's usage (from a docs trial: thrown from run(), they
    // showed gatewayd's); what only the input's bytes can tell is said in run(), one line, exit 2.
    func validate() throws {
        if let stream, WireInspector.Stream(rawValue: stream) == nil {
            throw ValidationError("unknown stream '\(stream)' (\(Self.streamNames))")
        }
        if stream == nil, file == nil {
            throw ValidationError("--stream is required (\(Self.streamNames)); a --file capture of trace names its own")
        }
        if !hex.isEmpty, WireInspector.bytes(fromHex: hex.joined(separator: " ")) == nil {
            throw ValidationError("not hex bytes: '\(hex.joined(separator: " ").prefix(60))'")
        }
    }

    func run() throws {
        if let file, let capture = try? TraceCapture.read(path: file) {
            try decodeCapture(capture)
            return
        }
        guard let kind = stream.flatMap(WireInspector.Stream.init(rawValue:)) else {
            printError("\(file ?? "the input") is not a capture of gatewayd trace: give its --stream (\(Self.streamNames))")
            throw ExitCode(CLIExit.usage)
        }
        let bytes: [UInt8]
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                printError("\(file): cannot be read")
                throw ExitCode(CLIExit.usage)
            }
            bytes = [UInt8](data)
        } else {
            let text =
                hex.isEmpty
                ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                : hex.joined(separator: " ")
            guard let parsed = WireInspector.bytes(fromHex: text) else {
                printError("not hex bytes: '\(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(60))'")
                throw ExitCode(CLIExit.usage)
            }
            bytes = parsed
        }
        let inspection = WireInspector.inspect(bytes, as: kind)
        if json {
            try Output.printJSON(DecodeReport(stream: kind.rawValue, inspection))
        } else {
            for line in Self.lines(inspection) { print(line) }
            print(Self.summary(inspection))
        }
        if inspection.rejectedByteCount > 0 { throw ExitCode(CLIExit.failed) }
    }

    /// A trace capture: each record decoded as its direction's stream, in order, with its time.
    private func decodeCapture(_ capture: TraceCapture) throws {
        var garbage = 0
        var reports: [DecodeReport] = []
        for record in capture.records {
            let inspection = WireInspector.inspect(record.bytes, as: record.stream, ff68Roles: capture.ff68Roles)
            garbage += inspection.rejectedByteCount
            if json {
                var report = DecodeReport(stream: record.stream.rawValue, inspection)
                report.time = record.time
                report.direction = record.direction
                reports.append(report)
                continue
            }
            let arrow = record.direction == "out" ? "→" : "←"
            print("\(TraceCapture.timeText(record.time, timeZone: capture.timeZone)) \(arrow) \(record.stream.rawValue)")
            for line in Self.lines(inspection) { print("    " + line) }
        }
        if json {
            try Output.printJSON(reports)
        } else {
            print("\(Output.counted(capture.records.count, "record")) from \(capture.bus), "
                  + "\(Output.counted(garbage, "byte")) of garbage")
        }
        if garbage > 0 { throw ExitCode(CLIExit.failed) }
    }

    static var streamNames: String { WireInspector.Stream.allCases.map(\.rawValue).joined(separator: ", ") }

    /// One line per frame or rejected run: offset, hex (the first 16 bytes), words.
    static func lines(_ inspection: WireInspector.Inspection) -> [String] {
        let rows = inspection.items.map { item -> [String] in
            let shown =
                WireInspector.hex(item.bytes.prefix(16)) + (item.bytes.count > 16 ? " … (\(item.bytes.count))" : "")
            if let reason = item.rejected {
                return [String(item.offset), shown, Output.paint("REJECTED", .red) + " \(reason)"]
            }
            return [String(item.offset), shown, item.frame ?? ""]
        }
        return Output.table(rows)
    }

    static func summary(_ inspection: WireInspector.Inspection) -> String {
        let runs = inspection.items.filter(\.isRejected).count
        let frames = inspection.frameCount
        return "\(Output.counted(frames, "frame")), \(Output.counted(runs, "rejected run")): "
            + "\(inspection.rejectedByteCount) of \(Output.counted(inspection.byteCount, "byte")) not part of any frame"
    }
}

/// What `gatewayd decode --json` prints.
struct DecodeReport: Encodable {
    struct Entry: Encodable {
        var offset: Int
        var length: Int
        var hex: String
        var frame: String?
        var rejected: String?
    }
    var stream: String
    var time: Date?
    var direction: String?
    var bytes: Int
    var frames: Int
    var garbageBytes: Int
    var items: [Entry]

    init(stream: String, _ inspection: WireInspector.Inspection) {
        self.stream = stream
        bytes = inspection.byteCount
        frames = inspection.frameCount
        garbageBytes = inspection.rejectedByteCount
        items = inspection.items.map {
            Entry(
                offset: $0.offset, length: $0.bytes.count, hex: WireInspector.hex($0.bytes), frame: $0.frame,
                rejected: $0.rejected)
        }
    }
}
