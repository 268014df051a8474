import Foundation
import Protocols

/// Decodes captured bytes of any protocol the gateway speaks, for a technician asking what is on a line: each frame
/// in words, and for every run of rejected bytes the reason (the checksum expected against the one found, a bad
/// length, no end byte, a capture that ends inside a frame).
public enum WireInspector {
    /// The byte streams that can be inspected: a protocol and a direction.
    public enum Stream: String, CaseIterable, Sendable, Codable {
        case escPosCommands = "escpos-commands"
        case escPosStatus = "escpos-status"
        case onbon
        case ff68
        case ff68Host = "ff68-host"
        case ff68Devices = "ff68-devices"
        case qsystemBox = "qsystem-box"
        case qsystemBoard = "qsystem-board"
        case modbusRTURequests = "modbus-rtu-requests"
        case modbusRTUResponses = "modbus-rtu-responses"
        case modbusTCPRequests = "modbus-tcp-requests"
        case modbusTCPResponses = "modbus-tcp-responses"

        /// What the stream carries.
        public var summary: String {
            switch self {
            case .escPosCommands: "host → ESC/POS printer (tickets, status requests)"
            case .escPosStatus: "ESC/POS printer → host (DLE EOT replies, automatic status back)"
            case .onbon: "Onbon BX packets, either direction"
            case .ff68: "FF 68 caller/evaluator bus, either direction"
            case .ff68Host: "host → FF 68 callers and evaluators (acknowledgements, displays)"
            case .ff68Devices: "FF 68 callers and evaluators → host (key frames)"
            case .qsystemBox: "QSystem box → host (key frames)"
            case .qsystemBoard: "host → QSystem number board"
            case .modbusRTURequests: "Modbus RTU master → device"
            case .modbusRTUResponses: "Modbus RTU device → master"
            case .modbusTCPRequests: "Modbus TCP client → server"
            case .modbusTCPResponses: "Modbus TCP server → client"
            }
        }

        /// The stream that reads frames whichever side sent them: what a listener beside the line hears.
        public var eitherDirection: Stream {
            switch self {
            case .ff68Host, .ff68Devices: .ff68
            default: self
            }
        }
    }

    /// What a capture holds: each frame described, and the bytes that were not part of any.
    public struct Result: Sendable, Equatable {
        public var frames: [String]
        public var discardedBytes: Int
    }

    /// One frame or one rejected run of bytes, where it lies in the capture.
    public struct Item: Sendable, Equatable, Codable {
        /// Offset of its first byte in the capture.
        public var offset: Int
        /// Its bytes.
        public var bytes: [UInt8]
        /// The frame in words; nil for a rejected run.
        public var frame: String?
        /// Why the bytes are no frame; nil for a frame.
        public var rejected: String?

        /// Whether this is a rejected run.
        public var isRejected: Bool { rejected != nil }
    }

    /// A capture decoded for a technician.
    public struct Inspection: Sendable, Equatable {
        /// Frames and rejected runs in capture order.
        public var items: [Item]
        /// Bytes in the capture.
        public var byteCount: Int
        /// Frames decoded.
        public var frameCount: Int { items.filter { !$0.isRejected }.count }
        /// Bytes in rejected runs.
        public var rejectedByteCount: Int { items.filter(\.isRejected).reduce(0) { $0 + $1.bytes.count } }
    }

    /// Decodes `bytes` as the stream says, to the end of the capture (a partial frame at the end is discarded).
    public static func decode(_ bytes: [UInt8], as stream: Stream) -> Result {
        let inspection = inspect(bytes, as: stream)
        return Result(frames: inspection.items.compactMap(\.frame), discardedBytes: inspection.rejectedByteCount)
    }

    /// Who sits at each address of an FF 68 bus, from its configuration: a host's frame and a device's can be
    /// the same bytes (the host acknowledges a caller's key with the caller's own frame).
    public enum FF68Role: String, Sendable, Codable {
        case caller
        case evaluator
    }

    /// Decodes `bytes` frame by frame, each rejected run with its reason; `ff68Roles` names the FF 68 devices by
    /// address, where the configuration knows them.
    public static func inspect(_ bytes: [UInt8], as stream: Stream, ff68Roles: [UInt8: FF68Role] = [:]) -> Inspection {
        switch stream {
        case .escPosCommands:
            // Text's wire length depends on the mode and code page: it takes what the other commands leave.
            walk(EscPosCommandDecoder(), bytes, stream, describe: describeEscPos) { command in
                if case .text = command { nil } else { command.encoded().count }
            }
        case .escPosStatus:
            walk(PrinterStatusDecoder(), bytes, stream, describe: describePrinterStatus) { $0.encoded.count }
        case .onbon: walk(OnbonDecoder(), bytes, stream, describe: describeOnbon) { _ in nil }
        case .ff68, .ff68Host, .ff68Devices:
            walk(FF68Decoder(), bytes, stream) {
                describeFF68($0, from: stream == .ff68Host ? .host : stream == .ff68Devices ? .device : nil,
                             role: ff68Roles[$0.address])
            } length: {
                $0.encode().count
            }
        case .qsystemBox:
            walk(QSystemBoxDecoder(), bytes, stream, describe: { "box \($0.address), key \($0.key)" }) {
                $0.encode().count
            }
        case .qsystemBoard: walk(QSystemBoardDecoder(), bytes, stream, describe: plain) { _ in nil }
        case .modbusRTURequests, .modbusRTUResponses:
            walk(ModbusRTUDecoder(role: stream == .modbusRTURequests ? .server : .client), bytes, stream) {
                describeModbus($0.address, $0.message)
            } length: {
                try? $0.encode().count
            }
        case .modbusTCPRequests, .modbusTCPResponses:
            walk(ModbusTCPDecoder(role: stream == .modbusTCPRequests ? .server : .client), bytes, stream) {
                "transaction \($0.transactionId), " + describeModbus($0.unitId, $0.message)
            } length: {
                try? $0.encode().count
            }
        }
    }

    /// The streams of a bus: what the gateway writes and what it reads, from its transport and, on a serial line,
    /// the protocol its devices' profiles speak.
    public static func streams(
        transport: BusConfig.Transport, lineProtocol: LineProtocol?
    ) -> (sent: Stream, received: Stream) {
        switch transport {
        case .modbusRTU: return (.modbusRTURequests, .modbusRTUResponses)
        case .modbusTCP: return (.modbusTCPRequests, .modbusTCPResponses)
        case .serial:
            switch lineProtocol {
            case .escPos: return (.escPosCommands, .escPosStatus)
            case .onbon: return (.onbon, .onbon)
            case .qsystem: return (.qsystemBoard, .qsystemBox)
            case .ff68, nil: return (.ff68Host, .ff68Devices)
            }
        }
    }

    /// The streams of bus `id` in `config`, its profiles read from `library` (nil: no such bus).
    public static func streams(
        bus id: String, config: GatewayConfig, library: ProfileLibrary
    )
        -> (sent: Stream, received: Stream)?
    {
        guard let bus = config.buses.first(where: { $0.id == id }) else { return nil }
        let lineProtocol = config.devices.lazy.filter { $0.bus == id }
            .compactMap { try? library.load(named: $0.profile).profile.lineProtocol }.first
        return streams(transport: bus.transport, lineProtocol: lineProtocol)
    }

    /// The address of the device a frame of an unprompted line is from or for (FF 68: its ADDR byte; a QSystem box's
    /// key frame: its second byte); nil on other streams.
    public static func deviceAddress(ofFrame bytes: [UInt8], in stream: Stream) -> Int? {
        switch stream {
        case .ff68, .ff68Host, .ff68Devices: bytes.count > 5 ? Int(bytes[5]) : nil
        case .qsystemBox: bytes.count > 1 ? Int(bytes[1]) : nil
        default: nil
        }
    }

    /// Whether frames of `stream` name their device (several devices on one line speak unprompted); a stream that
    /// does not (ESC/POS) is one device's.
    static func namesDevices(_ stream: Stream) -> Bool {
        switch stream {
        case .ff68, .ff68Host, .ff68Devices, .qsystemBox: true
        default: false
        }
    }

    /// The whole frames of `bytes` from or for the device at `address`, with their words: what a listen to one device
    /// shows of a line others speak on too (from a trial: a direct pad test passed on another pad's key).
    public static func frames(
        of address: Int, in bytes: [UInt8], as stream: Stream, ff68Roles: [UInt8: FF68Role] = [:]
    ) -> (bytes: [UInt8], words: [String]) {
        var found: (bytes: [UInt8], words: [String]) = ([], [])
        let addressed = namesDevices(stream)
        for item in inspect(bytes, as: stream, ff68Roles: ff68Roles).items {
            guard let frame = item.frame, !addressed || deviceAddress(ofFrame: item.bytes, in: stream) == address
            else { continue }
            found.bytes += item.bytes
            found.words.append(frame)
        }
        return found
    }

    /// The FF 68 devices of bus `id` in `config` by address, their profiles read from `library`.
    public static func ff68Roles(bus id: String, config: GatewayConfig, library: ProfileLibrary) -> [UInt8: FF68Role] {
        var roles: [UInt8: FF68Role] = [:]
        for device in config.devices where device.bus == id {
            switch (try? library.load(named: device.profile))?.profile {
            case .ff68Evaluator: roles[UInt8(truncatingIfNeeded: device.address)] = .evaluator
            case .ff68Caller: roles[UInt8(truncatingIfNeeded: device.address)] = .caller
            default: break
            }
        }
        return roles
    }

    /// Bytes written as hex pairs, with or without spaces, commas or `0x` prefixes; nil if any pair is not hex.
    public static func bytes(fromHex text: String) -> [UInt8]? {
        let cleaned = text.replacingOccurrences(of: "0x", with: "").replacingOccurrences(of: "0X", with: "")
            .filter { !$0.isWhitespace && $0 != "," && $0 != ":" }
        guard cleaned.count.isMultiple(of: 2) else { return nil }
        var bytes: [UInt8] = []
        var index = cleaned.startIndex
        while index < cleaned.endIndex {
            let next = cleaned.index(index, offsetBy: 2)
            guard let byte = UInt8(cleaned[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }

    /// `01 03 00 0A`.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
    }

    // MARK: - Walking a capture

    /// Feeds the decoder byte by byte and places every frame and discarded byte in the capture: bytes leave the
    /// decoder's buffer oldest first, as discarded (a resynchronisation drops a stale start before a frame) or as
    /// a frame's.
    private static func walk<Decoder: FrameDecoder>(
        _ decoder: Decoder, _ bytes: [UInt8], _ stream: Stream, describe: (Decoder.Frame) -> String,
        length: (Decoder.Frame) -> Int?
    ) -> Inspection {
        var decoder = decoder
        var items: [Item] = []
        var cursor = 0
        var discarded = 0
        func account(_ frames: [Decoder.Frame], consumedUpTo end: Int) {
            let newDiscarded = decoder.discardedByteCount - discarded
            discarded = decoder.discardedByteCount
            let newBuffered = decoder.bufferedByteCount
            // Bytes that left the buffer in this step: the discarded first, then the frames'.
            let leaving = max(0, (end - cursor) - newBuffered)
            let dropped = min(newDiscarded, leaving)
            if dropped > 0 {
                append(
                    &items,
                    Item(
                        offset: cursor, bytes: Array(bytes[cursor..<(cursor + dropped)]), frame: nil,
                        rejected: ""))
                cursor += dropped
            }
            var frameBytes = leaving - dropped
            // Several frames in one step (text ended by LF): each its own length, one without (text) the rest.
            var lengths = frames.map(length)
            let known = lengths.compactMap { $0 }.reduce(0, +)
            if let open = lengths.firstIndex(where: { $0 == nil }) {
                lengths[open] = max(0, frameBytes - known)
            } else if var last = lengths.last.flatMap({ $0 }), known < frameBytes {
                last += frameBytes - known
                lengths[lengths.count - 1] = last
            }
            for (index, frame) in frames.enumerated() {
                let length = min(frameBytes, lengths[index] ?? 0)
                items.append(
                    Item(
                        offset: cursor, bytes: Array(bytes[cursor..<(cursor + length)]),
                        frame: describe(frame), rejected: nil))
                cursor += length
                frameBytes -= length
            }
            if frameBytes > 0 {
                // Data a frame announced and the decoder let stream past (an image's): still that frame's.
                if let last = items.indices.last, !items[last].isRejected,
                    items[last].offset + items[last].bytes.count == cursor
                {
                    items[last].bytes += bytes[cursor..<(cursor + frameBytes)]
                } else {
                    append(
                        &items,
                        Item(
                            offset: cursor, bytes: Array(bytes[cursor..<(cursor + frameBytes)]), frame: nil,
                            rejected: ""))
                }
                cursor += frameBytes
            }
        }
        for index in bytes.indices {
            account(decoder.decode(CollectionOfOne(bytes[index])), consumedUpTo: index + 1)
        }
        account(decoder.flush(), consumedUpTo: bytes.count)
        if cursor < bytes.count {
            append(&items, Item(offset: cursor, bytes: Array(bytes[cursor...]), frame: nil, rejected: ""))
        }
        // Reasons last: a run is explained from its own bytes and where it stands.
        for index in items.indices where items[index].isRejected {
            let item = items[index]
            items[index].rejected = explain(
                item.bytes, stream, endsCapture: item.offset + item.bytes.count == bytes.count)
        }
        return Inspection(items: items, byteCount: bytes.count)
    }

    /// Appends a rejected run, merged with one just before it.
    private static func append(_ items: inout [Item], _ item: Item) {
        if item.isRejected, let last = items.indices.last, items[last].isRejected,
            items[last].offset + items[last].bytes.count == item.offset
        {
            items[last].bytes += item.bytes
        } else {
            items.append(item)
        }
    }

    // MARK: - Why bytes were rejected

    static func explain(_ run: [UInt8], _ stream: Stream, endsCapture: Bool) -> String {
        switch stream {
        case .modbusRTURequests, .modbusRTUResponses:
            return explainRTU(run, requests: stream == .modbusRTURequests, endsCapture: endsCapture)
        case .modbusTCPRequests, .modbusTCPResponses:
            return explainTCP(run, requests: stream == .modbusTCPRequests, endsCapture: endsCapture)
        case .ff68, .ff68Host, .ff68Devices:
            // Each candidate frame in the run on its own: from one FF 68 to the next.
            var starts = [0]
            for index in 1..<max(1, run.count - 1) where run[index] == 0xFF && run[index + 1] == 0x68 {
                starts.append(index)
            }
            let pieces = zip(starts, starts.dropFirst() + [run.count]).map { Array(run[$0..<$1]) }
            return pieces.enumerated().map { index, piece in
                explainFF68(piece, endsCapture: endsCapture && index == pieces.count - 1)
            }.joined(separator: "; then ")
        case .escPosCommands: return explainEscPos(run)
        case .escPosStatus: return "not a status reply: a DLE EOT answer has the bits 0xx1xx10, a status back 4 bytes"
        case .onbon, .qsystemBox, .qsystemBoard:
            return endsCapture
                ? "no whole frame: the capture ends inside one, or the bytes start none"
                : "no frame starts here (noise, a wrong baud rate or parity, or another protocol)"
        }
    }

    /// The length of a Modbus RTU frame from its first bytes; nil when the function is unknown or bytes are missing.
    static func rtuLength(_ run: [UInt8], requests: Bool) -> Int?? {
        guard run.count >= 2 else { return .some(nil) }
        let function = run[1]
        if requests {
            switch function {
            case 1...6: return 8
            case 0x0F, 0x10: return run.count >= 7 ? 9 + Int(run[6]) : .some(nil)
            default: return nil
            }
        }
        if function & 0x80 != 0 { return 5 }
        switch function {
        case 1...4: return run.count >= 3 ? 5 + Int(run[2]) : .some(nil)
        case 5, 6, 0x0F, 0x10: return 8
        default: return nil
        }
    }

    static func explainRTU(_ run: [UInt8], requests: Bool, endsCapture: Bool) -> String {
        var reasons: [String] = []
        var rest = run[...]
        while !rest.isEmpty && reasons.count < 4 {
            let bytes = Array(rest)
            guard let known = rtuLength(bytes, requests: requests) else {
                reasons.append(
                    String(
                        format: "no frame starts with %02X %02X: function %d is not one the gateway speaks"
                            + " (noise, a wrong baud rate or parity?)", bytes[0], bytes.count > 1 ? bytes[1] : 0,
                        bytes.count > 1 ? bytes[1] : 0))
                break
            }
            guard let length = known, bytes.count >= length else {
                let need = known.map { "\($0) bytes" } ?? "more bytes"
                let function = bytes.count > 1 ? bytes[1] : 0
                reasons.append(
                    endsCapture
                        ? "the capture ends inside a frame from address \(bytes[0]) (function \(function)): "
                            + "\(need) expected, \(bytes.count) there"
                        : "bad length: a frame from address \(bytes[0]) (function \(function)) needs \(need), "
                            + "only \(bytes.count) came before the next frame"
                )
                break
            }
            let expected = Checksum.crc16Modbus(bytes[0..<(length - 2)])
            let found = UInt16(bytes[length - 2]) | UInt16(bytes[length - 1]) << 8
            if expected != found {
                reasons.append(
                    String(
                        format: "checksum: expected %02X %02X, found %02X %02X "
                            + "(frame of %d bytes from address %d, function %d)",
                        expected & 0xFF, expected >> 8, found & 0xFF, found >> 8, length, bytes[0], bytes[1]))
            } else if bytes[0] > ModbusRTUFrame.highestAddress {
                reasons.append("address \(bytes[0]) is beyond 247, the highest a Modbus device takes")
            } else {
                reasons.append(
                    "the checksum is right but the frame is malformed (function \(bytes[1]), \(length) bytes)")
            }
            rest = rest.dropFirst(length)
        }
        if !rest.isEmpty && reasons.count == 4 { reasons.append("…") }
        return reasons.joined(separator: "; then ")
    }

    static func explainTCP(_ run: [UInt8], requests: Bool, endsCapture: Bool) -> String {
        guard run.count >= 7 else {
            return endsCapture
                ? "the capture ends inside an MBAP header (7 bytes, \(run.count) there)"
                : "too short for a Modbus TCP frame (an MBAP header is 7 bytes)"
        }
        let protocolId = UInt16(run[2]) << 8 | UInt16(run[3])
        let length = Int(run[4]) << 8 | Int(run[5])
        if protocolId != 0 { return "protocol id \(protocolId) in the MBAP header: Modbus is 0" }
        if length < 2 || length > 254 { return "bad length \(length) in the MBAP header (2 to 254)" }
        if run.count < 6 + length {
            return endsCapture
                ? "the capture ends inside a frame: \(6 + length) bytes announced, \(run.count) there"
                : "bad length: \(6 + length) bytes announced, \(run.count) came"
        }
        return "function \(run[7]) with these bytes is not a valid Modbus \(requests ? "request" : "answer")"
    }

    static func explainFF68(_ run: [UInt8], endsCapture: Bool) -> String {
        guard run.count >= 2, run[0] == 0xFF, run[1] == 0x68 else {
            if let start = run.firstIndex(of: 0xFF), start > 0, start + 1 < run.count, run[start + 1] == 0x68 {
                return "\(start) bytes before a frame start (FF 68), then: "
                    + explainFF68(Array(run[start...]), endsCapture: endsCapture)
            }
            return "no frame start (FF 68) in these bytes"
        }
        guard run.count >= 5 else {
            return endsCapture ? "the capture ends inside a frame header (FF 68 L L 68)" : "frame header cut short"
        }
        let length = Int(run[2])
        if run[3] != run[2] { return "bad length: the two length bytes differ (\(run[2]), \(run[3]))" }
        if run[4] != 0x68 { return String(format: "bad header: 68 expected after the lengths, found %02X", run[4]) }
        if length < 2 { return "bad length \(length): at least 2 (address and function)" }
        if length > 64 { return "bad length \(length): more than 64" }
        guard run.count >= length + 7 else {
            return endsCapture
                ? "the capture ends inside a frame: \(length + 7) bytes announced, \(run.count) there"
                : "no end byte: \(length + 7) bytes announced, only \(run.count) before the next frame"
        }
        let expected = Checksum.sum8(run[5..<(5 + length)])
        let found = run[5 + length]
        if expected != found {
            return String(
                format: "checksum: expected %02X, found %02X (address %d, function %02X)",
                expected, found, run[5], run[6])
        }
        return String(format: "no end byte: 16 expected after the checksum, found %02X", run[6 + length])
    }

    static func explainEscPos(_ run: [UInt8]) -> String {
        guard let first = run.first else { return "" }
        let names: [UInt8: String] = [0x1B: "ESC", 0x1C: "FS", 0x1D: "GS", 0x10: "DLE"]
        if let prefix = names[first] {
            guard run.count >= 2 else { return "\(prefix) at the end of the capture, its command cut off" }
            let function =
                (0x21...0x7E).contains(run[1]) ? String(UnicodeScalar(run[1])) : String(format: "%02X", run[1])
            if run.count >= 3 && [0x61, 0x56, 0x04, 0x21].contains(run[1]) {
                return "\(prefix) \(function) with parameter \(run[2]), out of range: a printer ignores it"
            }
            return "unknown command \(prefix) \(function) (\(hex(run.prefix(2))))"
        }
        if first < 0x20 || first == 0x7F { return String(format: "stray control byte %02X", first) }
        return "not a whole GB18030 character (Chinese mode is on, FS &)"
    }

    // MARK: - Frames in words

    private static func plain<Frame>(_ frame: Frame) -> String {
        String(describing: frame).replacingOccurrences(of: "Protocols.", with: "")
    }

    static func describeModbus(_ address: UInt8, _ message: ModbusMessage) -> String {
        switch message {
        case .request(let request):
            let what: String =
                switch request {
                case .readCoils(let start, let count): "read \(count) coils from \(start)"
                case .readDiscreteInputs(let start, let count): "read \(count) discrete inputs from \(start)"
                case .readHoldingRegisters(let start, let count): "read \(count) holding registers from \(start)"
                case .readInputRegisters(let start, let count): "read \(count) input registers from \(start)"
                case .writeSingleCoil(let coil, let on): "write coil \(coil) \(on ? "on" : "off")"
                case .writeSingleRegister(let register, let value): "write register \(register) = \(value)"
                case .writeMultipleRegisters(let start, let values):
                    "write \(values.count) registers from \(start): \(values.map(String.init).joined(separator: " "))"
                        + registerText(values)
                }
            return "address \(address) ← \(what)"
        case .response(let response):
            let what: String =
                switch response {
                case .readCoils(let status): "coils \(bits(status))"
                case .readDiscreteInputs(let status): "discrete inputs \(bits(status))"
                case .readHoldingRegisters(let values), .readInputRegisters(let values):
                    "\(values.count) registers: \(values.map(String.init).joined(separator: " "))"
                        + registerText(values)
                case .writeSingleCoil(let coil, let on): "coil \(coil) written \(on ? "on" : "off")"
                case .writeSingleRegister(let register, let value): "register \(register) written = \(value)"
                case .writeMultipleRegisters(let start, let count): "\(count) registers written from \(start)"
                case .exception(let function, let code): "EXCEPTION to \(function): \(exceptionName(code))"
                }
            return "address \(address) → \(what)"
        }
    }

    private static func bits(_ status: [UInt8]) -> String {
        status.map { byte in String((0..<8).map { byte >> $0 & 1 == 1 ? "1" : "0" }) }.joined(separator: " ")
    }

    /// The registers as text, when they read as such (two bytes each, big-endian, GB18030 or ASCII).
    private static func registerText(_ values: [UInt16]) -> String {
        var bytes = values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        while bytes.last == 0 { bytes.removeLast() }
        guard bytes.count >= 2, !bytes.contains(where: { $0 < 0x20 && $0 != 0 }),
            bytes.contains(where: { $0 >= 0x80 }) || bytes.allSatisfy({ (0x20...0x7E).contains($0) }),
            let text = ChineseText.decode(bytes.filter { $0 != 0 }, as: .gb18030)
        else { return "" }
        return " (text \"\(text)\")"
    }

    private static func exceptionName(_ code: ModbusExceptionCode) -> String {
        let names: [UInt8: String] = [
            1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
            5: "acknowledge", 6: "server device busy", 8: "memory parity error", 10: "gateway path unavailable",
            11: "gateway target device failed to respond",
        ]
        return "\(names[code.rawValue] ?? "code") (\(code.rawValue))"
    }

    static func describeOnbon(_ packet: OnbonPacket) -> String {
        func party(_ address: UInt16) -> String {
            address == OnbonPacket.hostAddress ? "host" : address == 0xFFFF ? "every screen" : "screen \(address)"
        }
        let command = packet.data.prefix(2).map { String(format: "%02X", $0) }.joined(separator: " ")
        return "\(party(packet.source)) → \(party(packet.destination)), command \(command), "
            + "\(packet.data.count) data bytes (checksum \(packet.checksumMode))"
    }

    /// Which side of an FF 68 bus sent a frame.
    enum FF68Sender {
        case host
        case device
    }

    /// An FF 68 frame in words. The host's frames and the devices' share one format: the direction (known to a
    /// trace through the gateway) and the device at the address (from the configuration) tell them apart, and
    /// whatever is not known is said as the alternatives it leaves.
    static func describeFF68(_ frame: FF68Frame, from sender: FF68Sender? = nil, role: FF68Role? = nil) -> String {
        var text = String(format: "address %d, function %02X", frame.address, frame.function)
        let readings = ff68Readings(frame, role: role)
        let byHost = readings.filter(\.byHost).map(\.words)
        let byDevice = readings.filter { !$0.byHost }.map(\.words)
        let words: [String] =
            switch sender {
            case .host: byHost.isEmpty ? byDevice.map { $0 + " (a device's frame, sent by the host)" } : byHost
            case .device: byDevice.isEmpty ? byHost.map { $0 + " (the host's frame, heard back)" } : byDevice
            // Either side: a caller's acknowledgement is its key frame, said once as the key.
            case nil: byDevice + readings.filter { $0.byHost && !$0.echoesTheDevice }.map { "from the host: " + $0.words }
            }
        if !words.isEmpty {
            text += ", " + words.joined(separator: ", or ")
        } else if !frame.data.isEmpty {
            text += ", data \(hex(frame.data))"
        }
        return text
    }

    /// One thing an FF 68 frame can be.
    private struct FF68Reading {
        var words: String
        var byHost: Bool
        /// The host's acknowledgement of a caller: the same bytes as the caller's key frame.
        var echoesTheDevice = false
    }

    /// What an FF 68 frame can be, and who sends it that way: for the device at its address when known, else for any.
    private static func ff68Readings(_ frame: FF68Frame, role: FF68Role?) -> [FF68Reading] {
        let evaluator = role != .caller
        let caller = role != .evaluator
        if let key = frame.evaluatorKey {
            return evaluator ? [FF68Reading(words: "evaluator key \(key)", byHost: false)] : []
        }
        var readings: [FF68Reading] = []
        var acknowledgement: FF68Reading?
        if caller, let action = frame.callerAction, !frame.data.isEmpty, frame.callerDisplay == nil {
            let keys = "caller keys \(hex(action.keys)) (\(name(of: action)))"
            readings.append(FF68Reading(words: keys, byHost: false))
            // The host acknowledges a caller's key frame with the frame itself.
            acknowledgement = FF68Reading(words: keys + " acknowledged", byHost: true, echoesTheDevice: true)
        }
        if evaluator, frame.function == FF68Function.evaluatorCommand, frame.data.count == 1 {
            // The host acknowledges an evaluator's key with FUNC 01 and the key, and opens an evaluation with 01 0B.
            let words = frame.data[0] == 0x0B ? "open an evaluation" : "evaluator key \(frame.data[0]) acknowledged"
            readings.append(FF68Reading(words: words, byHost: true))
        }
        if evaluator, frame.function == FF68Function.display, frame.data.count == 1 {
            readings.append(FF68Reading(words: "service level \(frame.data[0]) stars", byHost: true))
        }
        if caller, let display = frame.callerDisplay {
            readings.append(FF68Reading(words: "caller display \"\(display.text)\"", byHost: true))
        }
        if caller, frame.function == FF68Function.beep, frame.data.isEmpty {
            readings.append(FF68Reading(words: "caller beep", byHost: true))
        }
        return readings + (acknowledgement.map { [$0] } ?? [])
    }

    /// An action as the caller profiles name them (call-next, …), where the source gives the key a meaning.
    private static func name(of action: FF68CallerAction) -> String {
        switch action {
        case .callNext: "call-next"
        case .recall: "recall"
        case .requestEvaluation: "evaluate"
        case .cancel: "cancel"
        case .giveUp: "skip"
        case .suspend: "hold"
        case .callBack: "call-back"
        case .oneMetreLine: "one-metre line"
        case .pause: "pause"
        case .transfer: "transfer"
        case .unassigned: "no meaning in the protocol"
        }
    }

    /// What a real-time status byte says as the answer to each DLE EOT n.
    static func realTimeReadings(_ byte: UInt8) -> String {
        let readings = PrinterStatusRequest.allCases.map { request in
            PrinterDriver.names(of: PrinterCondition(realTimeReply: byte, to: request) ?? [])
        }
        guard readings.contains(where: { !$0.isEmpty }) else { return "all well" }
        return zip(PrinterStatusRequest.allCases, readings).map { request, names in
            "to DLE EOT \(request.rawValue): " + (names.isEmpty ? "all well" : names.joined(separator: ", "))
        }.joined(separator: "; ")
    }

    static func describePrinterStatus(_ frame: PrinterStatusFrame) -> String {
        switch frame {
        case .realTime(let byte):
            // Which DLE EOT it answers is the host's to know (from a docs trial: a reply of paper out had no words).
            String(format: "status reply %02X", byte) + " (" + Self.realTimeReadings(byte) + ")"
        case .automaticStatus(let status): "automatic status back \(hex(status.bytes))"
        }
    }

    static func describeEscPos(_ command: EscPosCommand) -> String {
        switch command {
        case .initialize: "ESC @: initialize"
        case .align(let alignment): "ESC a: align \(["left", "center", "right"][Int(min(alignment.rawValue, 2))])"
        case .characterSize(let width, let height): "GS !: character size \(width)×\(height)"
        case .printMode(let mode): "ESC !: print mode \(mode.rawValue)"
        case .bold(let on): "ESC E: bold \(on ? "on" : "off")"
        case .chineseMode(let on): on ? "FS &: Chinese mode on" : "FS .: Chinese mode off"
        case .text(let text): "text \"\(text)\""
        case .lineFeed: "LF: print and feed a line"
        case .feedLines(let count): "ESC d: print and feed \(count) lines"
        case .cut(let mode, let feed):
            "GS V: \(mode == .full ? "full" : "partial") cut" + (feed.map { " after feeding \($0)" } ?? "")
        case .qrCode(let function):
            switch function {
            case .selectModel(let model): "GS ( k: QR model \(model)"
            case .moduleSize(let size): "GS ( k: QR module size \(size)"
            case .errorCorrection(let level): "GS ( k: QR error correction \(level)"
            case .store(let data): "GS ( k: QR data \"\(String(decoding: data, as: UTF8.self))\""
            case .print: "GS ( k: print the QR code"
            }
        case .statusRequest(let request): "DLE EOT \(request.rawValue): status request (\(request))"
        case .enableAutomaticStatusBack(let mask):
            "GS a \(mask.rawValue): automatic status back"
                + (mask.rawValue == 0 ? " off" : " on")
        case .codePage(let table): "ESC t \(table): code page \(EscPosCodePage.name(table))"
        case .other(let other): other.name
        }
    }
}
