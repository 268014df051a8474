import Foundation
import Protocols

/// Decodes captured bytes of any protocol the gateway speaks, for a technician asking what is on a line.
public enum WireInspector {
    /// The byte streams that can be inspected: a protocol and a direction.
    public enum Stream: String, CaseIterable, Sendable {
        case escPosCommands = "escpos-commands"
        case escPosStatus = "escpos-status"
        case onbon
        case ff68
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
            case .qsystemBox: "QSystem box → host (key frames)"
            case .qsystemBoard: "host → QSystem number board"
            case .modbusRTURequests: "Modbus RTU master → device"
            case .modbusRTUResponses: "Modbus RTU device → master"
            case .modbusTCPRequests: "Modbus TCP client → server"
            case .modbusTCPResponses: "Modbus TCP server → client"
            }
        }
    }

    /// What a capture holds: each frame described, and the bytes that were not part of any.
    public struct Result: Sendable, Equatable {
        public var frames: [String]
        public var discardedBytes: Int
    }

    /// Decodes `bytes` as the stream says, to the end of the capture (a partial frame at the end is discarded).
    public static func decode(_ bytes: [UInt8], as stream: Stream) -> Result {
        switch stream {
        case .escPosCommands: run(EscPosCommandDecoder(), bytes)
        case .escPosStatus: run(PrinterStatusDecoder(), bytes)
        case .onbon: run(OnbonDecoder(), bytes)
        case .ff68: run(FF68Decoder(), bytes)
        case .qsystemBox: run(QSystemBoxDecoder(), bytes)
        case .qsystemBoard: run(QSystemBoardDecoder(), bytes)
        case .modbusRTURequests: run(ModbusRTUDecoder(role: .server), bytes)
        case .modbusRTUResponses: run(ModbusRTUDecoder(role: .client), bytes)
        case .modbusTCPRequests: run(ModbusTCPDecoder(role: .server), bytes)
        case .modbusTCPResponses: run(ModbusTCPDecoder(role: .client), bytes)
        }
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

    private static func run<Decoder: FrameDecoder>(_ decoder: Decoder, _ bytes: [UInt8]) -> Result {
        var decoder = decoder
        let frames = decoder.decode(bytes) + decoder.flush()
        let described = frames.map { String(describing: $0).replacingOccurrences(of: "Protocols.", with: "") }
        return Result(frames: described, discardedBytes: decoder.discardedByteCount)
    }
}
