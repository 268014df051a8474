// The data field of Onbon BX-5K/6K frames: requests the gateway sends and the controller's replies.
//
// Request data: command group, command, reply flag, then the command's parameters
// (onbonlab/bx.k.java src/BxCmd.java, BxCmdClearScreen.java; dmznlin/znlib UMgrBXFontCard.pas TBXRequest).
// Reply data: command group, command, error code, two reserved bytes, then any data
// (onbonlab/bx.k.java src/BxResp.java; UMgrBXFontCard.pas TBXResponse). ACK is group A0 command 00, NACK is
// A0 01 (onbonlab/bx.k.java src/BxCmdCode.java).

/// Why a request could not be encoded. Returned to the caller instead of trapping.
public enum OnbonEncodingError: Error, Equatable, Sendable {
    /// A character has no GB 2312 code (rare hanzi, emoji); the controller's font has no glyph for it either.
    case textNotEncodableInGB2312(String)
    /// The data field would exceed `OnbonPacket.maximumDataLength`.
    case dataTooLong(byteCount: Int)
    /// A field holds more entries than its count byte can say (areas, deleted area ids).
    case tooManyEntries(field: String, count: Int)
    /// A brightness schedule needs exactly 48 half-hour levels.
    case wrongScheduleLength(Int)
    /// Font numbers are written as three decimal digits.
    case fontNumberOutOfRange(Int)
}

/// A controller error code, sent in the third byte of a reply (Onbon's SDK error list).
public struct OnbonErrorCode: RawRepresentable, Hashable, Sendable {
    /// The byte in the reply.
    public var rawValue: UInt8
    /// The code for a reply byte; codes without a name below are still kept.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    // Names and numbers: onbonlab/BX-V-VI 5th动态区域用户手册.md §5.2.2 and dmznlin/znlib UMgrBXFontCard.pas.
    /// ERR_NO: no error.
    public static let none = Self(rawValue: 0)
    /// ERR_OUTOFGROUP: unknown command group.
    public static let unknownCommandGroup = Self(rawValue: 1)
    /// ERR_NOCMD: unknown command.
    public static let unknownCommand = Self(rawValue: 2)
    /// ERR_BUSY: the controller is busy.
    public static let busy = Self(rawValue: 3)
    /// ERR_MEMORYVOLUME: out of memory volume.
    public static let outOfMemory = Self(rawValue: 4)
    /// ERR_CHECKSUM: the request's CRC16 was wrong.
    public static let checksumError = Self(rawValue: 5)
    /// ERR_FILENOTEXIST: file does not exist.
    public static let fileNotFound = Self(rawValue: 6)
    /// ERR_FLASH: flash access error.
    public static let flashError = Self(rawValue: 7)
    /// ERR_FILE_DOWNLOAD: file download error.
    public static let fileDownloadError = Self(rawValue: 8)
    /// ERR_FILE_NAME: bad file name.
    public static let badFileName = Self(rawValue: 9)
    /// ERR_FILE_TYPE: bad file type.
    public static let badFileType = Self(rawValue: 10)
    /// ERR_FILE_CRC16: file CRC error.
    public static let fileChecksumError = Self(rawValue: 11)
    /// ERR_FONT_NOT_EXIST: the font library is missing.
    public static let fontMissing = Self(rawValue: 12)
    /// ERR_FIRMWARE_TYPE: firmware does not match the controller type.
    public static let firmwareTypeMismatch = Self(rawValue: 13)
    /// ERR_DATE_TIME_FORMAT: bad date/time format.
    public static let badDateTime = Self(rawValue: 14)
    /// ERR_FILE_EXIST: the file already exists.
    public static let fileExists = Self(rawValue: 15)
    /// ERR_FILE_BLOCK_NUM: bad file block number.
    public static let badFileBlockNumber = Self(rawValue: 16)
    /// ERR_CONTROLLER_TYPE: controller type mismatch (listed in the BX-5/6 dynamic area manuals).
    public static let controllerTypeMismatch = Self(rawValue: 17)
    /// ERR_SCREEN_PARA: screen parameter out of range.
    public static let badScreenParameter = Self(rawValue: 18)
    /// ERR_CONTROLLER_ID: wrong controller id.
    public static let badControllerID = Self(rawValue: 19)
}

/// Brightness levels 0...15 (15 brightest), fixed or per half hour (command group A3, command 02).
///
/// Layout: mode, current level, 48 half-hour levels. Sources: onbonlab/BX-K bx.k.cplus/doc/SdkWord/API
/// description/SCREEN_SetBrigthness.md (mode 0x01 forced, 0x02 scheduled; 16 levels; 48 half-hour values)
/// and app-tools-zxw 2.2.4's `修改亮度` (`A3 02 01 00 00 01 level` + 48 bytes).
public struct OnbonBrightness: Equatable, Sendable {
    /// How the controller picks its level.
    public enum Mode: Equatable, Sendable {
        /// Always `current`.
        case fixed
        /// From `halfHourLevels` by time of day.
        case scheduled
        /// A mode byte this codec does not know, kept so the frame re-encodes unchanged.
        case other(UInt8)

        var rawValue: UInt8 {
            switch self {
            case .fixed: 0x01
            case .scheduled: 0x02
            case .other(let value): value
            }
        }

        init(rawValue: UInt8) {
            self = rawValue == 0x01 ? .fixed : rawValue == 0x02 ? .scheduled : .other(rawValue)
        }
    }

    /// Fixed or scheduled.
    public var mode: Mode
    /// The level used in fixed mode.
    public var current: UInt8
    /// 48 levels, one per half hour from 00:00.
    public var halfHourLevels: [UInt8]

    /// A fixed level (clamped to 0...15); the schedule repeats it so a controller that reads it agrees.
    public static func fixed(_ level: UInt8) -> OnbonBrightness {
        let level = min(level, 15)
        return OnbonBrightness(mode: .fixed, current: level, halfHourLevels: Array(repeating: level, count: 48))
    }

    /// Mode, level and schedule as given; `encode` checks the schedule length.
    public init(mode: Mode, current: UInt8, halfHourLevels: [UInt8]) {
        self.mode = mode
        self.current = current
        self.halfHourLevels = halfHourLevels
    }
}

/// Which dynamic areas a real-time update deletes first.
public enum OnbonAreaDeletion: Equatable, Sendable {
    /// None (count byte 0).
    case none
    /// All of them (count byte FF, no ids follow).
    case all
    /// These area ids.
    case areas([UInt8])
}

/// The real-time display command (group A3, command 06): optionally delete areas, then (re)define areas with text.
///
/// Layout after the reply flag: process mode, reserved, delete count, [ids], area count, then per area a
/// little-endian byte count and the area (`OnbonDynamicArea`). Sources: onbonlab/bx.k.java
/// src/BxCmdSendDynamicArea.java, dmznlin/znlib UMgrBXFontCard.pas TBXRequest, and the captured frames cited in
/// the tests (their CRCs confirm the byte positions).
public struct OnbonDynamicAreaUpdate: Equatable, Sendable {
    /// 0: keep areas as they are; 1: clear and initialise the areas on receipt.
    public var processMode: UInt8
    /// Reserved byte after the process mode.
    public var reserved: UInt8
    /// Areas to delete before the update.
    public var deletion: OnbonAreaDeletion
    /// Areas to (re)define, each with its text.
    public var areas: [OnbonDynamicArea]

    /// An update; by default keeps other areas and deletes nothing.
    public init(
        processMode: UInt8 = 0,
        reserved: UInt8 = 0,
        deletion: OnbonAreaDeletion = .none,
        areas: [OnbonDynamicArea]
    ) {
        self.processMode = processMode
        self.reserved = reserved
        self.deletion = deletion
        self.areas = areas
    }
}

/// What the gateway asks a BX controller to do.
public enum OnbonCommand: Equatable, Sendable {
    /// Are you there? (group A2, command 00). The controller answers with an ACK.
    case ping
    /// Clear the screen (group A3, command 10).
    case clearScreen
    /// Set the brightness (group A3, command 02).
    case setBrightness(OnbonBrightness)
    /// Switch the screen on or off (group A3, command 00, parameter 01 on, 02 off); the controller keeps answering.
    /// Sources: onbonlab/bx.k.java src/BxCmdTurnOnOff.java (`r0, r1`, then `0x01 - on`, `0x02 - off`) with
    /// `CMD_TURN_ON_OFF` = A3 00 in its BxCmdCode.java, and onbonlab/BX-K SCREEN_ForceOnOff.md (强制开关机,
    /// "1标示开2标示关").
    case setPower(on: Bool)
    /// Show text in dynamic areas (group A3, command 06).
    case updateDynamicAreas(OnbonDynamicAreaUpdate)
    /// Any other command, with the bytes after the reply flag.
    case other(group: UInt8, command: UInt8, parameters: [UInt8])

    /// One text area updated in place: the gateway's everyday "show this" command.
    public static func showText(_ text: OnbonText, in area: OnbonAreaLayout) throws(OnbonEncodingError)
        -> OnbonCommand {
        .updateDynamicAreas(OnbonDynamicAreaUpdate(areas: [try OnbonDynamicArea(layout: area, text: text)]))
    }
}

/// A request: a command and whether the controller should answer.
public struct OnbonRequest: Equatable, Sendable {
    /// The command.
    public var command: OnbonCommand
    /// Third data byte. 0x01 asks for a reply (Onbon's Java SDK default; must be 1 for ping per the BX-5/6
    /// manuals). Other projects send 0x02 (dmznlin/znlib); what the controller does with it is not documented
    /// in the sources we found, so the raw byte is kept.
    public var replyFlag: UInt8

    /// The reply flag asking the controller to answer.
    public static let replyWanted: UInt8 = 0x01

    /// A request that asks for a reply unless told otherwise.
    public init(_ command: OnbonCommand, replyFlag: UInt8 = OnbonRequest.replyWanted) {
        self.command = command
        self.replyFlag = replyFlag
    }

    /// The data field, or an error if a count or length does not fit its field.
    public func encode() throws(OnbonEncodingError) -> [UInt8] {
        var bytes: [UInt8]
        switch command {
        case .ping:
            bytes = [0xA2, 0x00, replyFlag, 0x00, 0x00]
        case .clearScreen:
            bytes = [0xA3, 0x10, replyFlag, 0x00, 0x00]
        case .setBrightness(let brightness):
            guard brightness.halfHourLevels.count == 48 else {
                throw .wrongScheduleLength(brightness.halfHourLevels.count)
            }
            bytes = [0xA3, 0x02, replyFlag, 0x00, 0x00, brightness.mode.rawValue, brightness.current]
            bytes += brightness.halfHourLevels
        case .setPower(let on):
            bytes = [0xA3, 0x00, replyFlag, 0x00, 0x00, on ? 0x01 : 0x02]
        case .updateDynamicAreas(let update):
            bytes = [0xA3, 0x06, replyFlag, update.processMode, update.reserved]
            switch update.deletion {
            case .none:
                bytes.append(0x00)
            case .all:
                bytes.append(0xFF)
            case .areas(let ids):
                // FF means "all" and 00 "none", so a list has 1...254 entries.
                guard (1...254).contains(ids.count) else {
                    throw .tooManyEntries(field: "deleted areas", count: ids.count)
                }
                bytes.append(UInt8(ids.count))
                bytes += ids
            }
            guard update.areas.count <= 255 else { throw .tooManyEntries(field: "areas", count: update.areas.count) }
            bytes.append(UInt8(update.areas.count))
            for area in update.areas {
                let areaBytes = area.encode()
                guard areaBytes.count <= Int(UInt16.max) else { throw .dataTooLong(byteCount: areaBytes.count) }
                OnbonBytes.append(UInt16(areaBytes.count), to: &bytes)
                bytes += areaBytes
            }
        case .other(let group, let command, let parameters):
            bytes = [group, command, replyFlag] + parameters
        }
        guard bytes.count <= OnbonPacket.maximumDataLength else { throw .dataTooLong(byteCount: bytes.count) }
        return bytes
    }

    /// Parses a request's data field; commands whose parameters do not parse come back as `.other`.
    /// Nil if the field is too short to hold group, command and reply flag.
    public init?(data: [UInt8]) {
        guard data.count >= 3 else { return nil }
        let group = data[0]
        let code = data[1]
        replyFlag = data[2]
        let parameters = Array(data[3...])
        command = Self.parse(group: group, command: code, parameters: parameters)
            ?? .other(group: group, command: code, parameters: parameters)
    }

    private static func parse(group: UInt8, command: UInt8, parameters: [UInt8]) -> OnbonCommand? {
        switch (group, command) {
        case (0xA2, 0x00) where parameters == [0, 0]:
            return .ping
        case (0xA3, 0x10) where parameters == [0, 0]:
            return .clearScreen
        case (0xA3, 0x00) where parameters == [0, 0, 0x01] || parameters == [0, 0, 0x02]:
            return .setPower(on: parameters[2] == 0x01)
        case (0xA3, 0x02) where parameters.count == 2 + 2 + 48 && parameters[0] == 0 && parameters[1] == 0:
            let brightness = OnbonBrightness(
                mode: .init(rawValue: parameters[2]), current: parameters[3], halfHourLevels: Array(parameters[4...]))
            // Unknown mode bytes round-trip through `.other` in the mode, which re-encodes the same byte.
            return .setBrightness(brightness)
        case (0xA3, 0x06):
            return parseDynamicAreas(parameters).map(OnbonCommand.updateDynamicAreas)
        default:
            return nil
        }
    }

    private static func parseDynamicAreas(_ bytes: [UInt8]) -> OnbonDynamicAreaUpdate? {
        guard bytes.count >= 4 else { return nil }
        var offset = 3
        let deletion: OnbonAreaDeletion
        switch bytes[2] {
        case 0x00:
            deletion = .none
        case 0xFF:
            deletion = .all
        case let count:
            guard offset + Int(count) <= bytes.count else { return nil }
            deletion = .areas(Array(bytes[offset..<offset + Int(count)]))
            offset += Int(count)
        }
        guard offset < bytes.count else { return nil }
        let areaCount = Int(bytes[offset])
        offset += 1
        var areas: [OnbonDynamicArea] = []
        for _ in 0..<areaCount {
            guard let length = OnbonBytes.uint16(bytes, at: offset) else { return nil }
            offset += 2
            guard offset + Int(length) <= bytes.count,
                  let area = OnbonDynamicArea(bytes: Array(bytes[offset..<offset + Int(length)]))
            else { return nil }
            areas.append(area)
            offset += Int(length)
        }
        guard offset == bytes.count else { return nil }
        return OnbonDynamicAreaUpdate(processMode: bytes[0], reserved: bytes[1], deletion: deletion, areas: areas)
    }
}

/// What a BX controller answers.
public enum OnbonReply: Equatable, Sendable {
    /// ACK (group A0, command 00): the request was carried out. The answer to a ping.
    case acknowledged
    /// NACK (group A0, command 01) with the controller's error code.
    case rejected(OnbonErrorCode)
    /// Any other reply (e.g. a status read-out), with its error byte and data.
    case other(group: UInt8, command: UInt8, error: OnbonErrorCode, data: [UInt8])

    /// The data field (group, command, error, two reserved bytes, data).
    public func encode() -> [UInt8] {
        switch self {
        case .acknowledged: [0xA0, 0x00, 0x00, 0x00, 0x00]
        case .rejected(let error): [0xA0, 0x01, error.rawValue, 0x00, 0x00]
        case .other(let group, let command, let error, let data): [group, command, error.rawValue, 0x00, 0x00] + data
        }
    }

    /// Parses a reply's data field; nil if it is shorter than the five fixed bytes.
    public init?(data: [UInt8]) {
        guard data.count >= 5 else { return nil }
        let error = OnbonErrorCode(rawValue: data[2])
        let tail = Array(data[5...])
        switch (data[0], data[1]) {
        case (0xA0, 0x00) where error == .none && tail.isEmpty && data[3] == 0 && data[4] == 0:
            self = .acknowledged
        case (0xA0, 0x01) where tail.isEmpty && data[3] == 0 && data[4] == 0:
            self = .rejected(error)
        default:
            // Reserved bytes other than zero are dropped here; nothing we found gives them a meaning.
            self = .other(group: data[0], command: data[1], error: error, data: tail)
        }
    }
}

extension OnbonPacket {
    /// A CRC-checked request from the gateway (source 0x8000) to the controller at `destination`.
    public static func request(
        _ request: OnbonRequest,
        to destination: UInt16,
        deviceType: UInt8 = OnbonPacket.anyDeviceType
    ) throws(OnbonEncodingError) -> OnbonPacket {
        OnbonPacket(destination: destination, deviceType: deviceType, data: try request.encode())
    }

    /// A reply from the controller at `address` to the gateway (destination 0x8000), as the mock board sends it.
    public static func reply(
        _ reply: OnbonReply,
        from address: UInt16,
        deviceType: UInt8 = OnbonPacket.anyDeviceType
    ) -> OnbonPacket {
        OnbonPacket(destination: hostAddress, source: address, deviceType: deviceType, data: reply.encode())
    }
}
