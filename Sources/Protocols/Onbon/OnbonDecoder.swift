/// Incremental decoder for Onbon BX frames in either direction (requests for the mock board, replies for the gateway).
///
/// Escaping guarantees that `A5` and `5A` never occur inside a frame body, so `A5` always starts a frame and `5A`
/// always ends one. A candidate is dropped on a bad escape pair, a length field that disagrees with the body, a
/// wrong check value or an unknown check mode. Because no frame can begin between a failed candidate's first `A5`
/// and the point of failure (no `A5` can be in there), dropping up to that point is the same as dropping one byte
/// at a time and rescanning, without the rescans.
public struct OnbonDecoder: FrameDecoder {
    /// A checked frame: header fields and data.
    public typealias Frame = OnbonPacket

    private enum State {
        /// Outside any frame: skipping bytes until an `A5`.
        case idle
        /// Inside the `A5` preamble.
        case preamble
        /// Collecting the escaped body until `5A`.
        case body
    }

    private var state = State.idle
    private var preambleCount = 0
    private var rawBodyCount = 0
    private var pendingEscape: UInt8?
    private var body: [UInt8] = []
    /// Data length announced by the header, once the header is in.
    private var announcedDataLength: Int?

    /// Frames whose check mode is `.none` carry no check; they are rejected unless this is set.
    public var acceptsUncheckedFrames: Bool

    /// Bytes skipped so far: garbage, and every byte of rejected candidates.
    public private(set) var discardedByteCount = 0
    /// Frames whole but for their CRC or sum.
    public private(set) var checksumFailureCount = 0

    /// The current candidate's bytes (at most 8 preamble bytes, then its escaped body).
    public var bufferedByteCount: Int { state == .idle ? 0 : preambleCount + rawBodyCount }

    /// The longest valid frame on the wire, `OnbonPacket.maximumFrameLength`.
    public var maximumBufferedBytes: Int { OnbonPacket.maximumFrameLength }

    /// A decoder that rejects frames without a check unless `acceptsUncheckedFrames`.
    public init(acceptsUncheckedFrames: Bool = false) {
        self.acceptsUncheckedFrames = acceptsUncheckedFrames
        body.reserveCapacity(64)
    }

    /// Feeds bytes in; returns the frames they complete, oldest first.
    public mutating func decode(_ bytes: some Sequence<UInt8>) -> [OnbonPacket] {
        var frames: [OnbonPacket] = []
        for byte in bytes {
            if let frame = consume(byte) { frames.append(frame) }
        }
        return frames
    }

    /// The line went quiet: drops the partial frame. Returns nothing, as no frame can hide inside one.
    public mutating func flush() -> [OnbonPacket] {
        // No frame can lie behind a partial one's start: its body holds no A5.
        abandonCandidate(extraBytes: 0)
        return []
    }

    private mutating func consume(_ byte: UInt8) -> OnbonPacket? {
        switch state {
        case .idle:
            if byte == OnbonPacket.frameStart {
                startCandidate()
            } else {
                discardedByteCount += 1
            }
        case .preamble:
            if byte == OnbonPacket.frameStart {
                // A preamble longer than 8 bytes: keep at most 8 of them as part of the frame.
                if preambleCount < OnbonPacket.preambleLength {
                    preambleCount += 1
                } else {
                    discardedByteCount += 1
                }
            } else if byte == OnbonPacket.frameEnd {
                abandonCandidate(extraBytes: 1)
            } else {
                state = .body
                bodyByte(byte)
            }
        case .body:
            if byte == OnbonPacket.frameStart {
                // The previous frame was cut short; this A5 starts the next one.
                abandonCandidate(extraBytes: 0)
                startCandidate()
            } else if byte == OnbonPacket.frameEnd {
                return finishCandidate()
            } else {
                bodyByte(byte)
            }
        }
        return nil
    }

    private mutating func startCandidate() {
        state = .preamble
        preambleCount = 1
        rawBodyCount = 0
        pendingEscape = nil
        body.removeAll(keepingCapacity: true)
        announcedDataLength = nil
    }

    /// Drops the candidate and `extraBytes` just consumed, and goes back to looking for an `A5`.
    private mutating func abandonCandidate(extraBytes: Int) {
        discardedByteCount += bufferedByteCount + extraBytes
        state = .idle
        preambleCount = 0
        rawBodyCount = 0
        pendingEscape = nil
        body.removeAll(keepingCapacity: true)
        announcedDataLength = nil
    }

    private mutating func bodyByte(_ byte: UInt8) {
        rawBodyCount += 1
        if let escape = pendingEscape {
            pendingEscape = nil
            switch (escape, byte) {
            case (0xA6, 0x01): append(0xA6)
            case (0xA6, 0x02): append(0xA5)
            case (0x5B, 0x01): append(0x5B)
            case (0x5B, 0x02): append(0x5A)
            default: abandonCandidate(extraBytes: 0)
            }
        } else if byte == 0xA6 || byte == 0x5B {
            pendingEscape = byte
        } else {
            append(byte)
        }
    }

    private mutating func append(_ byte: UInt8) {
        body.append(byte)
        if body.count == OnbonPacket.headerLength {
            let length = Int(UInt16(body[12]) | UInt16(body[13]) << 8)
            guard length <= OnbonPacket.maximumDataLength else { return abandonCandidate(extraBytes: 0) }
            announcedDataLength = length
        }
        // Longer than the header announced (header, data, two check bytes): not a frame.
        let limit = OnbonPacket.headerLength + (announcedDataLength ?? OnbonPacket.maximumDataLength) + 2
        if body.count > limit { abandonCandidate(extraBytes: 0) }
    }

    private mutating func finishCandidate() -> OnbonPacket? {
        guard pendingEscape == nil, let packet = validatedPacket() else {
            abandonCandidate(extraBytes: 1)
            return nil
        }
        state = .idle
        preambleCount = 0
        rawBodyCount = 0
        body.removeAll(keepingCapacity: true)
        announcedDataLength = nil
        return packet
    }

    private mutating func validatedPacket() -> OnbonPacket? {
        guard let dataLength = announcedDataLength,
              body.count == OnbonPacket.headerLength + dataLength + 2,
              let mode = OnbonChecksumMode(rawValue: body[8])
        else { return nil }
        let checkedCount = body.count - 2
        let sent = UInt16(body[checkedCount]) | UInt16(body[checkedCount + 1]) << 8
        switch mode {
        case .crc16:
            guard Checksum.crc16ARC(body[0..<checkedCount]) == sent else {
                checksumFailureCount += 1
                return nil
            }
        case .sum16:
            guard body[0..<checkedCount].reduce(UInt16(0), { $0 &+ UInt16($1) }) == sent else {
                checksumFailureCount += 1
                return nil
            }
        case .none:
            guard acceptsUncheckedFrames else { return nil }
        }
        return OnbonPacket(
            destination: UInt16(body[0]) | UInt16(body[1]) << 8,
            source: UInt16(body[2]) | UInt16(body[3]) << 8,
            reserved: Array(body[4..<7]),
            option: body[7],
            checksumMode: mode,
            displayMode: body[9],
            deviceType: body[10],
            protocolVersion: body[11],
            data: Array(body[OnbonPacket.headerLength..<checkedCount])
        )
    }
}
