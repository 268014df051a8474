import Foundation
import Protocols
import Testing

/// Golden vectors from python-escpos 3.1 (an implementation independent of ours), recorded by
/// scripts/escpos-fixtures.py into Tests/ProtocolTests/Fixtures/escpos.
enum EscPosFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/escpos")

    static let names = [
        "ticket-full-cut", "ticket-partial-cut", "styles-double-size", "status-requests", "long-text-and-qr",
        "ticket-code-pages",
    ]

    static func bytes(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: directory.appendingPathComponent("\(name).bin")))
    }

    static func description(_ name: String) throws -> FixtureDescription {
        try JSONDecoder().decode(
            FixtureDescription.self, from: Data(contentsOf: directory.appendingPathComponent("\(name).json")))
    }

    /// python-escpos's constants and method output, as hex strings.
    static func constants() throws -> [String: [UInt8]] {
        let hex = try JSONDecoder().decode(
            [String: String].self, from: Data(contentsOf: directory.appendingPathComponent("constants.json")))
        return hex.mapValues { string in
            let digits = Array(string.utf8)
            return stride(from: 0, to: digits.count - 1, by: 2).compactMap {
                UInt8(String(decoding: digits[$0...($0 + 1)], as: UTF8.self), radix: 16)
            }
        }
    }
}

/// What scripts/escpos-fixtures.py asked python-escpos to print.
struct FixtureDescription: Decodable {
    struct Line: Decodable, Equatable {
        var text: String
        var chinese: Bool
        var align: String
        var width: Int
        var height: Int
        var bold: Bool
    }
    struct Cut: Decodable, Equatable {
        var mode: String
        var feed: Int?
    }
    struct QRCode: Decodable, Equatable {
        var payload: String
        var size: Int
        var errorCorrection: String
        var model: Int
    }
    struct TicketFields: Decodable {
        var number: String
        var serviceName: String
        var waitingAhead: Int
        var issuedAt: String
        var hallName: String?
        var footer: String?
        var qrPayload: String?
        var numberScale: Int
        var cut: String
    }
    var lines: [Line]
    var cuts: [Cut]
    var feeds: [Int]
    var qrCodes: [QRCode]
    var statusRequests: [Int]
    var automaticStatusBackMasks: [Int]
    /// python-escpos calls that print nothing the lines record (set, barcode, image, cashdraw …), by name.
    var otherCommands: [String]?
    var ticket: TicketFields?
}

/// Plays decoded commands on a model printer and notes what it printed, in the fixture's terms.
struct PrintedOutput: Equatable {
    var lines: [FixtureDescription.Line] = []
    var cuts: [FixtureDescription.Cut] = []
    var feeds: [Int] = []
    var qrCodes: [FixtureDescription.QRCode] = []
    var statusRequests: [Int] = []
    var automaticStatusBackMasks: [Int] = []

    init(_ description: FixtureDescription) {
        lines = description.lines
        cuts = description.cuts
        feeds = description.feeds
        qrCodes = description.qrCodes
        statusRequests = description.statusRequests
        automaticStatusBackMasks = description.automaticStatusBackMasks
    }

    init(replaying commands: [EscPosCommand]) {
        var align = "left", width = 1, height = 1, bold = false, chinese = false
        var line: FixtureDescription.Line?
        var model = 2, size = 3, level = "L"
        var stored = ""
        func endLine() {
            if let finished = line { lines.append(finished) }
            line = nil
        }
        for command in commands {
            switch command {
            case .initialize:
                (align, width, height, bold, chinese) = ("left", 1, 1, false, false)
            case .align(let alignment):
                align = ["left", "center", "right"][Int(alignment.rawValue)]
            case .characterSize(let newWidth, let newHeight):
                (width, height) = (newWidth, newHeight)
            case .printMode(let mode):
                width = mode.contains(.doubleWidth) ? 2 : 1
                height = mode.contains(.doubleHeight) ? 2 : 1
                bold = mode.contains(.emphasized)
            case .bold(let isOn): bold = isOn
            case .chineseMode(let isOn): chinese = isOn
            case .text(let text):
                if line == nil {
                    line = .init(text: "", chinese: chinese, align: align, width: width, height: height, bold: bold)
                }
                line?.text += text
            case .lineFeed: endLine()
            case .feedLines(let count):
                endLine()
                feeds.append(Int(count))
            case .cut(let mode, let feed):
                endLine()
                cuts.append(.init(mode: mode == .full ? "full" : "partial", feed: feed.map(Int.init)))
            case .qrCode(let function):
                switch function {
                case .selectModel(let selected): model = Int(selected.rawValue) - 0x30
                case .moduleSize(let selected): size = Int(selected)
                case .errorCorrection(let selected): level = ["L", "M", "Q", "H"][Int(selected.rawValue) - 0x30]
                case .store(let data): stored = String(decoding: data, as: UTF8.self)
                case .print: qrCodes.append(.init(payload: stored, size: size, errorCorrection: level, model: model))
                }
            case .statusRequest(let request): statusRequests.append(Int(request.rawValue))
            case .enableAutomaticStatusBack(let mask): automaticStatusBackMasks.append(Int(mask.rawValue))
            case .codePage, .other: break
            }
        }
        endLine()
    }
}

@Suite struct EscPosFixtureTests {
    @Test(arguments: EscPosFixtures.names)
    func decodedStreamPrintsWhatPythonEscposWasAskedFor(_ name: String) throws {
        let bytes = try EscPosFixtures.bytes(name)
        let expected = PrintedOutput(try EscPosFixtures.description(name))
        var decoder = EscPosCommandDecoder()
        let commands = decoder.decode(bytes) + decoder.flush()
        #expect(PrintedOutput(replaying: commands) == expected)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test(arguments: EscPosFixtures.names)
    func chunkingDoesNotChangeTheCommands(_ name: String) throws {
        let bytes = try EscPosFixtures.bytes(name)
        var whole = EscPosCommandDecoder()
        let reference = whole.decode(bytes) + whole.flush()
        for chunkSize in [1, 2, 3, 7, 64] {
            var decoder = EscPosCommandDecoder()
            var commands: [EscPosCommand] = []
            var start = 0
            while start < bytes.count {
                commands += decoder.decode(bytes[start..<min(bytes.count, start + chunkSize)])
                start += chunkSize
            }
            commands += decoder.flush()
            #expect(commands == reference, "chunks of \(chunkSize)")
        }
    }

    /// Every byte python-escpos emits is part of a known command: code page selections (ESC t n) included.
    @Test(arguments: EscPosFixtures.names)
    func nothingPythonEscposSendsIsDiscarded(_ name: String) throws {
        var decoder = EscPosCommandDecoder()
        _ = decoder.decode(try EscPosFixtures.bytes(name)) + decoder.flush()
        #expect(decoder.discardedByteCount == 0, "\(name)")
    }

    /// The magic encoder's code pages (CP437, ISO 8859-7 for the euro and Greek) read back as the text sent, and
    /// each of python-escpos's other calls comes out as named commands.
    @Test func codePagesAndTheOtherCommandsOfAShopTicket() throws {
        var decoder = EscPosCommandDecoder()
        let commands = decoder.decode(try EscPosFixtures.bytes("ticket-code-pages")) + decoder.flush()
        #expect(commands.contains(.codePage(15)) && commands.contains(.codePage(0)))
        let texts = commands.compactMap { if case .text(let text) = $0 { text } else { nil } }
        #expect(texts.joined(separator: "|") == "Café Müller|Prix: 5,00 |€|Ελληνικά|Gr|üße ½|Small print")
        let names = commands.compactMap { if case .other(let other) = $0 { other.name } else { nil } }
        for expected in ["ESC -: underline 2 dots", "ESC M: font B", "GS B: white/black reverse on",
                         "GS b: smoothing on", "ESC {: upside-down on", "ESC 3: line spacing 30 dots",
                         "GS k: barcode EAN13 \"4006381333931\"", "GS k: barcode CODE128 \"{BHALL123\"",
                         "GS v: raster image 2 bytes × 8 rows", "ESC p: drawer kick, pin 2", "ESC B: buzzer 2 times, 1 × 100 ms",
                         "ESC c: panel buttons disabled"] {
            #expect(names.contains(expected), "\(expected) in \(names)")
        }
        #expect(names.contains { $0.hasPrefix("ESC *: bit image in columns") })
        #expect(names.contains { $0.hasPrefix("GS (: graphics") })
        #expect(names.contains { $0.hasPrefix("ESC D: horizontal tab positions") })
    }

    /// Our ticket layout, built with python-escpos by the fixture script: the bytes must match one for one.
    @Test(arguments: ["ticket-full-cut", "ticket-partial-cut"])
    func ticketEncoderMatchesPythonEscpos(_ name: String) throws {
        let fields = try #require(try EscPosFixtures.description(name).ticket)
        let ticket = Ticket(
            number: fields.number, serviceName: fields.serviceName, waitingAhead: fields.waitingAhead,
            issuedAt: fields.issuedAt, hallName: fields.hallName, footer: fields.footer, qrPayload: fields.qrPayload,
            numberScale: fields.numberScale, cut: fields.cut == "full" ? .full : .partial)
        let expected = try EscPosFixtures.bytes(name)
        #expect(ticket.encode() == expected)
        var decoder = EscPosCommandDecoder()
        #expect(decoder.decode(expected) + decoder.flush() == ticket.commands)
    }
}

/// Every command code our encoder uses, against python-escpos 3.1's `escpos.constants` (and what its methods send).
/// FS & / FS . and GS a are not in python-escpos; they are checked against Epson's reference in EscPosTests.
@Suite struct EscPosConstantsTests {
    @Test func commandCodesMatchPythonEscpos() throws {
        let constants = try EscPosFixtures.constants()
        #expect(EscPos.initialize == constants["HW_INIT"])
        #expect(EscPos.lineFeed == constants["CTL_LF"])
        #expect(EscPos.align(.left) == constants["TXT_ALIGN_LT"])
        #expect(EscPos.align(.center) == constants["TXT_ALIGN_CT"])
        #expect(EscPos.align(.right) == constants["TXT_ALIGN_RT"])
        #expect(EscPos.bold(true) == constants["TXT_BOLD_ON"])
        #expect(EscPos.bold(false) == constants["TXT_BOLD_OFF"])
        #expect(Array(EscPos.characterSize(width: 3, height: 3).prefix(2)) == constants["TXT_SIZE"])
        #expect(EscPos.printMode([]) == constants["TXT_NORMAL"])
        #expect(EscPos.printMode([]) + EscPos.printMode(.doubleHeight) == constants["TXT_2HEIGHT"])
        #expect(EscPos.printMode([]) + EscPos.printMode(.doubleWidth) == constants["TXT_2WIDTH"])
        #expect(EscPos.printMode([]) + EscPos.printMode([.doubleWidth, .doubleHeight]) == constants["TXT_4SQUARE"])
        #expect(EscPos.cut(.full) == constants["PAPER_FULL_CUT"])
        #expect(EscPos.cut(.partial) == constants["PAPER_PART_CUT"])
        #expect(EscPos.cut(.partial, feed: 0) == constants["CUT_NO_FEED"])
        #expect(EscPos.feedLines(Ticket.feedBeforeCut) == constants["PRINT_AND_FEED_6"])
        #expect(EscPos.statusRequest(.printer) == constants["RT_STATUS_ONLINE"])
        #expect(EscPos.statusRequest(.paperSensor) == constants["RT_STATUS_PAPER"])
    }

    @Test func everyCharacterSizeMatchesPythonEscpos() throws {
        let constants = try EscPosFixtures.constants()
        for width in 1...8 {
            for height in 1...8 {
                let expected = constants["CUSTOM_SIZE_\(width)x\(height)"]
                #expect(EscPos.characterSize(width: width, height: height) == expected)
            }
        }
    }

    @Test func nativeQRCodeMatchesPythonEscpos() throws {
        let constants = try EscPosFixtures.constants()
        // QR_ECLEVEL_* and QR_MODEL_* are python-escpos's numbers; the wire carries '0' + level and '0' + model.
        let levels: [(String, EscPosQRErrorCorrection)] = [
            ("QR_ECLEVEL_L", .low), ("QR_ECLEVEL_M", .medium), ("QR_ECLEVEL_Q", .quartile), ("QR_ECLEVEL_H", .high),
        ]
        for (name, level) in levels { #expect(constants[name].map { $0.map { $0 + 0x30 } } == [level.rawValue]) }
        let models: [(String, EscPosQRModel)] = [("QR_MODEL_1", .model1), ("QR_MODEL_2", .model2), ("QR_MICRO", .micro)]
        for (name, model) in models { #expect(constants[name].map { $0.map { $0 + 0x30 } } == [model.rawValue]) }
        #expect(EscPos.qrCode("https://hall.example/q/A023", moduleSize: 6, errorCorrection: .medium)
            == constants["QR_NATIVE_M6"])
        #expect(EscPos.qrCode("A023") == constants["QR_NATIVE_DEFAULT"])
    }

    /// python-escpos reads DLE EOT replies with these masks: 0x12 paper adequate, 0x1E near end, 0x72 no paper;
    /// bit 3 (mask 8) set means offline.
    @Test func statusMasksMatchPythonEscpos() throws {
        let constants = try EscPosFixtures.constants()
        let adequate = try #require(constants["RT_MASK_PAPER"]?.first)
        let nearEnd = try #require(constants["RT_MASK_LOWPAPER"]?.first)
        let noPaper = try #require(constants["RT_MASK_NOPAPER"]?.first)
        let offlineBit = try #require(constants["RT_MASK_ONLINE"]?.first)
        #expect(PrinterCondition(realTimeReply: adequate, to: .paperSensor)?.state == .online)
        #expect(PrinterCondition(realTimeReply: nearEnd, to: .paperSensor)?.state == .paperNearEnd)
        #expect(PrinterCondition(realTimeReply: noPaper, to: .paperSensor)?.state == .paperOut)
        #expect(PrinterCondition(realTimeReply: 0x12 | offlineBit, to: .printer) == .offline)
    }
}
