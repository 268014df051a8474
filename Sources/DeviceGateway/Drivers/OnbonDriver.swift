public import Foundation
public import Protocols

/// Onbon BX-5/BX-6 call boards: pinged each poll, calls written into the profile's dynamic area.
/// Every answered command becomes a `hall.board.acknowledged` event with the controller's verdict.
public struct OnbonDriver: BusDriver {
    public let devices: [DeviceConfig]
    private let profiles: [String: OnbonBoardProfile]
    private let hallId: String

    init(members: [(device: DeviceConfig, profile: OnbonBoardProfile)], hallId: String) {
        devices = members.map(\.device)
        profiles = Dictionary(members.map { ($0.device.id, $0.profile) }, uniquingKeysWith: { first, _ in first })
        self.hallId = hallId
    }

    public func makeDecoder() -> OnbonDecoder { OnbonDecoder() }

    public mutating func pollRequests(for device: DeviceConfig) -> [LineRequest] {
        (try? OnbonPacket.request(OnbonRequest(.ping), to: UInt16(device.address)).encode()).map {
            [LineRequest(device: device.id, bytes: $0, expectsAnswer: true, purpose: "ping")]
        } ?? []
    }

    public mutating func handle(_ packet: OnbonPacket, inFlight request: LineRequest?, at time: Date) -> LineReaction {
        guard packet.destination == OnbonPacket.hostAddress,
              let device = devices.first(where: { UInt16($0.address) == packet.source }),
              let reply = OnbonReply(data: packet.data)
        else { return LineReaction() }
        let answers = request?.device == device.id
        guard let request, answers, request.purpose != "ping" else {
            return LineReaction(from: device.id, answersRequest: answers)
        }
        let acknowledged: BoardAcknowledged
        switch reply {
        case .acknowledged: acknowledged = BoardAcknowledged(command: request.purpose, accepted: true, errorCode: nil)
        case .rejected(let code): acknowledged = BoardAcknowledged(command: request.purpose, accepted: false, errorCode: Int(code.rawValue))
        case .other(_, _, let code, _):
            acknowledged = BoardAcknowledged(command: request.purpose, accepted: code == .none, errorCode: code == .none ? nil : Int(code.rawValue))
        }
        let event = CloudEvent(id: UUID().uuidString.lowercased(), source: EventSource.device(hall: hallId, device: device.id),
                               type: HallEventType.boardAcknowledged, time: time,
                               subject: device.window.map(EventSource.windowSubject), data: .boardAcknowledged(acknowledged))
        // A board that says it did not take the command has not shown it: the command fails with its reason.
        return LineReaction(events: [event], from: device.id, answersRequest: true,
                            refusal: acknowledged.accepted ? nil : "controller error \(acknowledged.errorCode ?? -1)")
    }

    public func requests(for command: HallCommand, to device: DeviceConfig) throws(GatewayError) -> [LineRequest] {
        guard let profile = profiles[device.id] else { throw GatewayError(.deviceError, "no board \(device.id)") }
        let onbonCommand: OnbonCommand
        do {
            switch command {
            case .clear:
                onbonCommand = .clearScreen
            case .brightness(let percent):
                onbonCommand = .setBrightness(.fixed(HallCommand.boardLevel(percent: percent)))
            case .power(let on):
                onbonCommand = .setPower(on: on)
            case .showText(let text) where text.contains("\\"):
                throw GatewayError(.commandRejected, "\(device.id): the text holds a backslash, which the board reads as "
                                   + "markup (\\C colour, \\FO font): refused")
            case .call, .recall, .pause, .showText:
                let area = profile.area
                // Profiles give pixels; the controller counts 8-pixel columns unless bit 15 says pixels.
                let layout = OnbonAreaLayout(
                    areaID: UInt8(truncatingIfNeeded: area.id), x: UInt16(area.x) | OnbonAreaLayout.pixelUnits,
                    y: UInt16(area.y), width: UInt16(area.width) | OnbonAreaLayout.pixelUnits, height: UInt16(area.height))
                let colour = OnbonColour.allCases.first { "\($0)" == profile.colour } ?? .red
                let text = command.displayText(with: device.templates) ?? ""
                onbonCommand = try .showText(OnbonText(text, colour: colour), in: layout)
            case .printTicket:
                throw GatewayError(.commandRejected, "\(device.id) is a call board: it prints no tickets")
            case .setStaff, .requestRating:
                throw GatewayError(.commandRejected, "\(device.id) is a call board, not an evaluator pad: no \(command.name)")
            }
            let bytes = try OnbonPacket.request(OnbonRequest(onbonCommand), to: UInt16(device.address)).encode()
            // Boards speak only when asked: a ping's late ACK still on the line must not pass for this command's.
            return [LineRequest(device: device.id, bytes: bytes, expectsAnswer: true, purpose: command.name,
                                discardsStaleInput: true)]
        } catch let error as GatewayError {
            throw error
        } catch OnbonEncodingError.textNotEncodableInGB2312(let text) {
            // Not the text itself: free text may carry what should not reach events and logs.
            let character = text.unicodeScalars.first { ChineseText.encode(String($0), as: .gb2312) == nil }
            throw GatewayError(.commandRejected, "\(device.id): the text has a character with no GB 2312 code"
                               + (character.map { " (\($0.codePoint))" } ?? ""))
        } catch {
            throw GatewayError(.commandRejected, "\(device.id): \(command.name) cannot be shown: \(error)")
        }
    }
}
