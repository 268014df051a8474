import Foundation
import Protocols

/// A Modbus device's poll answer read through its profile: the named registers in words.
enum ProfileReading {
    /// What the registers of a poll (`block` read from `start`) say, one line per field; empty for other families.
    static func describe(_ profile: DeviceProfile, registers: [UInt16], start: Int) -> [String] {
        func value(_ address: Int) -> UInt16? {
            let index = address - start
            return registers.indices.contains(index) ? registers[index] : nil
        }
        func text(_ range: RegisterRange) -> String {
            let words = (range.start..<range.end).compactMap(value)
            let bytes = RegisterText.bytes(from: words).prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        switch profile {
        case .modbusEvaluator(let pad):
            var lines: [String] = []
            if let status = value(pad.statusRegister) {
                let ready = status & (1 << pad.onlineBit) != 0
                lines.append(String(format: "status 0x%04X: %@", status, ready ? "ready" : "NOT READY"))
            }
            if let counter = value(pad.counterRegister) { lines.append("ratings since power-up: \(counter)") }
            if let high = value(pad.bootIdRegister), let low = value(pad.bootIdRegister + 1) {
                lines.append(String(format: "boot id 0x%04X%04X", high, low))
            }
            let staff = text(pad.staffId).trimmingCharacters(in: .whitespaces)
            // What the pad shows goes no further than the ratings would take it: a phone number is not repeated.
            let shown = (try? CommandCenter.checkStaffId(staff)) != nil ? staff : "a text that is no staff number (not shown)"
            lines.append("staff shown: \(staff.isEmpty ? "none" : shown)")
            if let counter = value(pad.counterRegister), counter > 0 {
                // The ring holds the last keys: rating n at start + (n - 1) mod count.
                let count = min(Int(counter), pad.keyRing.count, 5)
                let keys = (0..<count).compactMap { back -> String? in
                    let n = Int(counter) - back
                    guard let code = value(pad.keyRing.start + (n - 1) % pad.keyRing.count) else { return nil }
                    let label = pad.scale.keys.first { $0.code == Int(code) }?.label ?? "unknown key"
                    return "\(label) (\(code))"
                }
                lines.append("last keys, newest first: " + keys.joined(separator: ", "))
            }
            return lines
        case .modbusBoard(let board):
            var lines: [String] = []
            if let status = value(board.statusRegister) {
                let ready = status & (1 << board.readyBit) != 0
                let faults = board.faultBits.filter { status & (1 << $0.bit) != 0 }.map(\.name)
                lines.append(
                    String(format: "status 0x%04X: %@", status, ready ? "in service" : "NOT IN SERVICE")
                        + (faults.isEmpty ? "" : ", faults: " + faults.joined(separator: ", ")))
            }
            if let mode = value(board.modeRegister) {
                let name = [board.modes.clear: "blank", board.modes.show: "steady", board.modes.blink: "blinking"][
                    Int(mode)]
                lines.append("mode \(mode) (\(name ?? "unknown"))")
            }
            if let command = value(board.commandRegister), let acknowledged = value(board.acknowledgeRegister) {
                lines.append(
                    "command \(command), acknowledged \(acknowledged)"
                        + (command == acknowledged ? "" : ": NOT YET ON THE DISPLAY"))
            }
            if let power = board.powerRegister, let on = value(power) {
                lines.append("screen \(on != 0 ? "on" : "off: it shows nothing")")
            }
            if let brightness = board.brightnessRegister, let level = value(brightness) {
                lines.append("brightness level \(level) of \(HallCommand.brightestBoardLevel)")
            }
            for reading in board.readings {
                let first = Int(reading.field.address) - start
                guard first >= 0, first + reading.field.registerCount <= registers.count,
                    let decoded = try? reading.field.decode(from: registers, blockStart: UInt16(start))
                else { continue }
                let shown =
                    switch decoded {
                    case .integer(let number): "\(number)"
                    case .real(let number): String(format: "%.1f", number)
                    case .flag(let flag): flag ? "on" : "off"
                    case .text(let text): text
                    }
                lines.append("\(reading.name): \(shown) \(reading.unit)")
            }
            return lines
        default:
            return []
        }
    }
}
