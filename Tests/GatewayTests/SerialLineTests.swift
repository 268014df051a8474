@testable import DeviceGateway
import Foundation
import MockDevices
import Testing

@Suite struct SerialLineTests {
    @Test func bytesCrossAPseudoTerminalBothWays() throws {
        let terminal = try PseudoTerminal()
        let line = try SerialLine(settings: SerialSettings(port: terminal.devicePath, baud: 9600, parity: .even))
        try line.write([0xFF, 0x68, 0x00, 0x16])
        var received = [UInt8](repeating: 0, count: 16)
        var entry = pollfd(fd: terminal.controller, events: Int16(POLLIN), revents: 0)
        #expect(poll(&entry, 1, 1000) == 1)
        let count = read(terminal.controller, &received, received.count)
        #expect(Array(received.prefix(max(0, count))) == [0xFF, 0x68, 0x00, 0x16])

        _ = [UInt8]([0x01, 0x05, 0x30, 0x07]).withUnsafeBytes { write(terminal.controller, $0.baseAddress, $0.count) }
        #expect(try line.read(timeout: .seconds(1)) == [0x01, 0x05, 0x30, 0x07])
        #expect(try line.read(timeout: .milliseconds(20)).isEmpty, "a quiet line times out empty")
    }

    @Test func aLineWhoseOtherEndIsGoneSaysSoInsteadOfReadingNothing() throws {
        let terminal = try PseudoTerminal()
        let line = try SerialLine(settings: SerialSettings(port: terminal.devicePath))
        // As when a USB adapter is unplugged: the tty hangs up.
        terminal.hangUp()
        #expect(throws: GatewayError.self) {
            for _ in 0..<3 { _ = try line.read(timeout: .milliseconds(50)) }
        }
    }

    @Test func aMissingPortSaysWhichAndWhy() {
        #expect {
            try SerialLine(settings: SerialSettings(port: "/dev/ttyUSB-not-here"))
        } throws: { error in
            "\(error)" == "cannot open /dev/ttyUSB-not-here: no such device"
        }
    }

    @Test func anUnsupportedBaudRateIsAConfigError() throws {
        let text = """
            hall: {id: h}
            buses:
              - {id: b, transport: modbus-rtu, port: /dev/ttyUSB0, baud: 14400}
            devices: []
            """
        #expect {
            try ConfigLoader.parse(text, file: "h.yaml", relativeTo: "/tmp")
        } throws: { error in
            "\(error)".contains("h.yaml:3:62: buses[0].baud: 14400 baud is not supported")
        }
    }
}

@Suite struct PortListTests {
    @Test func everyListedPortExistsAndTheJSONFormDecodes() async throws {
        let result = try await run(gatewaydPath, ["ports", "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        let ports = try result.standardOutput.split(separator: "\n").map {
            try JSONDecoder().decode(SerialPortInfo.self, from: Data($0.utf8))
        }
        #expect(ports == SerialPortCatalog.list())
        for port in ports {
            #expect(FileManager.default.fileExists(atPath: port.path), "\(port.path)")
            #expect(["usb", "native", "bluetooth"].contains(port.transport))
        }
    }
}
