/// Incremental decoder for Modbus RTU frames on a serial line.
///
/// RTU has no start byte: the length comes from the function code (and a byte count for variable-length
/// PDUs), and a frame is accepted only when its CRC matches and its PDU is valid for the role. A failed
/// candidate costs one byte; the scan resumes at the next byte, so a frame hidden behind garbage is found.
public struct ModbusRTUDecoder: FrameDecoder {
    /// Which side this decoder listens for: `.server` decodes requests, `.client` decodes responses.
    public let role: ModbusRole
    /// Bytes skipped so far because they were not part of a valid frame.
    public private(set) var discardedByteCount = 0
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// The longest RTU frame: 256 bytes.
    public var maximumBufferedBytes: Int { ModbusRTUFrame.maximumLength }

    /// Frames of a plausible length whose CRC did not match, counted at frame boundaries.
    public private(set) var checksumFailureCount = 0

    private var buffer = ModbusReceiveBuffer()
    /// Buffered bytes the candidate at the head needs before it is worth looking at again.
    private var needed = 1
    /// Whether the head of the buffer follows a whole frame or a silence, where a frame must start.
    private var atFrameBoundary = true

    /// A decoder for the frames `role` receives.
    public init(role: ModbusRole) {
        self.role = role
    }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [ModbusRTUFrame] {
        var frames: [ModbusRTUFrame] = []
        // Bytes arriving on an empty buffer start a new burst: where a frame starts.
        if buffer.count == 0 { atFrameBoundary = true }
        // One byte at a time, so the buffer never holds more than the candidate frame it is waiting for.
        for byte in bytes {
            buffer.append(byte)
            if buffer.count >= needed { scan(into: &frames, lineIsQuiet: false) }
        }
        return frames
    }

    /// The line went quiet: drops the partial frame and returns any whole frames that lay behind its start.
    public mutating func flush() -> [ModbusRTUFrame] {
        var frames: [ModbusRTUFrame] = []
        scan(into: &frames, lineIsQuiet: true)
        return frames
    }

    private mutating func scan(into frames: inout [ModbusRTUFrame], lineIsQuiet: Bool) {
        while buffer.count > 0 {
            switch candidateLength() {
            case .invalid:
                dropOneByte()
            case .needsAtLeast(let count):
                if lineIsQuiet { dropOneByte() } else { needed = count; return }
            case .exactly(let length):
                guard buffer.count >= length else {
                    if lineIsQuiet { dropOneByte() } else { needed = length; return }
                    continue
                }
                if let frame = checkedFrame(length: length) {
                    frames.append(frame)
                    buffer.consume(length)
                    atFrameBoundary = true
                } else {
                    if atFrameBoundary, !hasValidCRC(length: length) { checksumFailureCount += 1 }
                    dropOneByte()
                }
            }
        }
        needed = 1
        if lineIsQuiet { atFrameBoundary = true }
    }

    private func hasValidCRC(length: Int) -> Bool {
        let crc = Checksum.crc16Modbus(buffer.slice(from: 0, count: length - 2))
        return buffer[length - 2] == UInt8(crc & 0xFF) && buffer[length - 1] == UInt8(crc >> 8)
    }

    /// The whole frame length of the candidate at the head, as far as the buffered bytes tell.
    private func candidateLength() -> ModbusPDULength {
        let address = buffer[0]
        switch role {
        case .server: guard address <= ModbusRTUFrame.highestAddress else { return .invalid }
        case .client: guard (1...ModbusRTUFrame.highestAddress).contains(address) else { return .invalid }
        }
        // Address and CRC around the PDU.
        switch ModbusPDUParser.length(of: buffer.slice(from: 1), role: role) {
        case .invalid: return .invalid
        case .needsAtLeast(let pduBytes): return .needsAtLeast(1 + pduBytes)
        case .exactly(let pduBytes): return .exactly(1 + pduBytes + 2)
        }
    }

    private func checkedFrame(length: Int) -> ModbusRTUFrame? {
        let crc = Checksum.crc16Modbus(buffer.slice(from: 0, count: length - 2))
        guard buffer[length - 2] == UInt8(crc & 0xFF), buffer[length - 1] == UInt8(crc >> 8),
              let message = ModbusPDUParser.parse(buffer.slice(from: 1, count: length - 3), role: role)
        else { return nil }
        return ModbusRTUFrame(address: buffer[0], message: message)
    }

    private mutating func dropOneByte() {
        buffer.consume(1)
        discardedByteCount += 1
        atFrameBoundary = false
    }
}

/// Incremental decoder for Modbus TCP frames (MBAP header, then the PDU).
///
/// The header must carry protocol id 0 and a length of 2…254 (unit id and a PDU of at most 253 bytes), and
/// the PDU must be exactly that long and valid for the role. TCP has no checksum, so a failed candidate
/// costs one byte and the scan resumes at the next, as on a serial line.
public struct ModbusTCPDecoder: FrameDecoder {
    /// Which side this decoder listens for: `.server` decodes requests, `.client` decodes responses.
    public let role: ModbusRole
    /// Bytes skipped so far because they were not part of a valid frame.
    public private(set) var discardedByteCount = 0
    /// Bytes held back waiting for the rest of a frame.
    public var bufferedByteCount: Int { buffer.count }
    /// The longest Modbus TCP frame: 260 bytes.
    public var maximumBufferedBytes: Int { ModbusTCPFrame.maximumLength }

    private var buffer = ModbusReceiveBuffer()
    private var needed = 1
    /// The frames of the last decode, kept: once its caller let go of them, the next decode refills the same storage
    /// instead of allocating (a client decodes one reply per transaction).
    private var lastFrames: [ModbusTCPFrame] = []

    /// A decoder for the frames `role` receives.
    public init(role: ModbusRole) {
        self.role = role
    }

    /// Appends received bytes and returns every frame they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [ModbusTCPFrame] {
        // Taken out, not refilled where it is: `scan` is a mutating method, and the stored array cannot also be
        // passed to it inout.
        var found: [ModbusTCPFrame] = []
        swap(&found, &lastFrames)
        found.removeAll(keepingCapacity: true)
        // A whole read at once (a reply usually comes in one): the scan looks only at the head of the buffer, so
        // it finds the same frames as it would byte by byte, without a generic call per byte.
        if bytes.withContiguousStorageIfAvailable({ buffer.append(contentsOf: $0) }) == nil {
            for byte in bytes { buffer.append(byte) }
        }
        if buffer.count >= needed { scan(into: &found, connectionIsQuiet: false) }
        lastFrames = found
        return found
    }

    /// The stream went quiet: drops the partial frame and returns any whole frames that lay behind its start.
    public mutating func flush() -> [ModbusTCPFrame] {
        var frames: [ModbusTCPFrame] = []
        scan(into: &frames, connectionIsQuiet: true)
        return frames
    }

    private mutating func scan(into frames: inout [ModbusTCPFrame], connectionIsQuiet: Bool) {
        while buffer.count > 0 {
            switch candidateLength() {
            case .invalid:
                dropOneByte()
            case .needsAtLeast(let count):
                if connectionIsQuiet { dropOneByte() } else { needed = count; return }
            case .exactly(let length):
                guard buffer.count >= length else {
                    if connectionIsQuiet { dropOneByte() } else { needed = length; return }
                    continue
                }
                // The slice is gone before `consume`: one still sharing the buffer's storage would make it copy.
                if let message = ModbusPDUParser.parse(
                    buffer.slice(from: ModbusTCPFrame.headerLength, count: length - ModbusTCPFrame.headerLength),
                    role: role)
                {
                    let transactionId = UInt16(buffer[0]) << 8 | UInt16(buffer[1])
                    frames.append(ModbusTCPFrame(transactionId: transactionId, unitId: buffer[6], message: message))
                    buffer.consume(length)
                } else {
                    dropOneByte()
                }
            }
        }
        needed = 1
    }

    /// The whole frame length of the candidate at the head; each header byte is checked as soon as it arrives.
    private func candidateLength() -> ModbusPDULength {
        let header = ModbusTCPFrame.headerLength
        // Protocol id 0, and a length whose high byte is 0 (at most 254).
        for offset in 2...4 {
            guard buffer.count > offset else { return .needsAtLeast(offset + 1) }
            guard buffer[offset] == 0 else { return .invalid }
        }
        guard buffer.count > 5 else { return .needsAtLeast(6) }
        let length = Int(buffer[5])
        guard (2...ModbusLimits.maximumPDUBytes + 1).contains(length) else { return .invalid }
        let total = header - 1 + length
        guard buffer.count > header else { return .needsAtLeast(header + 1) }
        // The function code and what follows must agree with the header's length.
        switch ModbusPDUParser.length(of: buffer.slice(from: header, count: min(buffer.count, total) - header),
                                      role: role) {
        case .invalid: return .invalid
        case .exactly(let pduBytes) where pduBytes != length - 1: return .invalid
        case .exactly, .needsAtLeast: return .exactly(total)
        }
    }

    private mutating func dropOneByte() {
        buffer.consume(1)
        discardedByteCount += 1
    }
}

/// The bytes a decoder holds back, consumed from the front without shifting the array every time.
struct ModbusReceiveBuffer: Sendable {
    private var storage: [UInt8] = []
    private var head = 0

    var count: Int { storage.count - head }

    subscript(offset: Int) -> UInt8 { storage[head + offset] }

    mutating func append(_ byte: UInt8) {
        storage.append(byte)
    }

    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        storage.append(contentsOf: bytes)
    }

    mutating func consume(_ byteCount: Int) {
        head += min(byteCount, count)
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 {
            storage.removeFirst(head)
            head = 0
        }
    }

    /// The buffered bytes from `offset` to the end.
    func slice(from offset: Int) -> ArraySlice<UInt8> {
        storage[min(head + offset, storage.count)...]
    }

    /// `count` buffered bytes from `offset`.
    func slice(from offset: Int, count: Int) -> ArraySlice<UInt8> {
        storage[(head + offset)..<(head + offset + count)]
    }
}
