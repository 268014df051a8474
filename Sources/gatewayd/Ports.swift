import ArgumentParser
import DeviceGateway
import Foundation

struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the serial ports with their USB ids, to tell which adapter is which (opens none).")

    @Flag(help: "One JSON object per port.")
    var json = false

    func run() throws {
        let ports = SerialPortCatalog.list()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for port in ports { print(String(decoding: try encoder.encode(port), as: UTF8.self)) }
            return
        }
        guard !ports.isEmpty else {
            print("no serial ports found")
            return
        }
        for port in ports {
            var line = "\(port.path)  \(port.transport)"
            if let usbId = port.usbId { line += "  \(usbId)" }
            let names = [port.manufacturer, port.product].compactMap { $0 }.joined(separator: " ")
            line += "  " + (names.isEmpty ? port.description : names)
            if let serial = port.serialNumber { line += "  serial \(serial)" }
            print(line)
            // The name to configure: a ttyUSB number follows the order adapters were found in.
            if let link = port.stableLink { print("    \(link)  (the same after a re-plug: use it as the bus's port)") }
        }
    }
}
