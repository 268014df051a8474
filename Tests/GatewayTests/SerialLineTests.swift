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

    @Test func theKindOfDeviceIsNamedAsSystemdsDeviceAllowTakesIt() throws {
        // What a refused open tells the technician to add: DeviceAllow=char-<kind>, the driver in /proc/devices.
        let terminal = try PseudoTerminal()
        #expect(SerialLine.deviceGroup(of: terminal.devicePath) == "pts")
        #expect(SerialLine.deviceGroup(of: "/dev/null") == "mem")
        #expect(SerialLine.deviceGroup(of: "/etc/hostname") == nil, "not a device")
        #expect(SerialLine.deviceGroup(of: "/dev/no-such-port") == nil)
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

    @Test func flowControlLeftByTheLastUserIsTurnedOff() throws {
        // As minicom leaves a port: RTS/CTS and XON/XOFF on. With CTS unwired nothing would leave the port.
        let terminal = try PseudoTerminal()
        let earlier = open(terminal.devicePath, O_RDWR | O_NOCTTY)
        try #require(earlier >= 0)
        defer { close(earlier) }
        var left = termios()
        try #require(tcgetattr(earlier, &left) == 0)
        left.c_cflag |= tcflag_t(CRTSCTS)
        left.c_iflag |= tcflag_t(IXON | IXOFF | IXANY)
        try #require(tcsetattr(earlier, TCSANOW, &left) == 0)

        let line = try SerialLine(settings: SerialSettings(port: terminal.devicePath))
        defer { line.close() }
        var now = termios()
        try #require(tcgetattr(earlier, &now) == 0)
        #expect(now.c_cflag & tcflag_t(CRTSCTS) == 0, "RTS/CTS off")
        #expect(now.c_iflag & tcflag_t(IXON | IXOFF | IXANY) == 0, "XON/XOFF off")
    }

    @Test(.timeLimit(.minutes(1))) func aPortThatTakesNoMoreOutputFailsTheWriteInsteadOfHanging() throws {
        // Nobody reads the other end: the tty's buffer fills and stays full, as behind a held CTS.
        let terminal = try PseudoTerminal()
        let line = try SerialLine(settings: SerialSettings(port: terminal.devicePath, baud: 115_200))
        defer { line.close() }
        let started = ContinuousClock.now
        #expect {
            try line.write([UInt8](repeating: 0x55, count: 1 << 20))
        } throws: { error in
            "\(error)".contains("\(terminal.devicePath) takes no more output") && "\(error)".contains("the adapter stalls")
        }
        #expect(ContinuousClock.now - started >= SerialLine.stallLimit, "gave the port the whole stall limit")
    }

    @Test func aWakeAfterTheCloseWritesIntoNoOtherFile() throws {
        let terminal = try PseudoTerminal()
        let line = try SerialLine(settings: SerialSettings(port: terminal.devicePath))
        line.close()
        // Files opened after the close take the lowest free numbers: those the line gave back.
        let folder = try TemporaryDirectory()
        let files = (0..<3).map { open(folder.file("file-\($0)"), O_WRONLY | O_CREAT, 0o600) }
        defer { for file in files { close(file) } }
        try #require(files.allSatisfy { $0 >= 0 })
        // As a command submitted from the API's thread just as the bus drops its line.
        line.wake()
        for index in files.indices {
            let size = (try FileManager.default.attributesOfItem(atPath: folder.file("file-\(index)"))[.size] as? Int) ?? -1
            #expect(size == 0, "file-\(index) holds no stray byte")
        }
    }

    /// A line is claimed: a second open to speak on it is refused (two masters garble each other's frames), one to
    /// listen (`gatewayd trace` with the gateway stopped) is not.
    @Test func aSecondOpenToSpeakOnAClaimedLineIsRefused() throws {
        let terminal = try PseudoTerminal()
        let settings = SerialSettings(port: terminal.devicePath)
        let line = try SerialLine(settings: settings)
        let refused = #expect(throws: GatewayError.self) { try SerialLine(settings: settings) }
        #expect(refused?.code == .portUnavailable)
        #expect(refused?.message == "cannot open \(terminal.devicePath): in use by another program", "\(String(describing: refused))")
        _ = try SerialLine(settings: settings, readOnly: true)
        line.close()
        _ = try SerialLine(settings: settings)
    }

    /// From an installer's trial: a forgotten program with the pads' port open took answers meant for the gateway, and
    /// the timeouts were put down to the wiring. The bus waits for the port, saying who has it, and polls once it is
    /// closed.
    @Test func aPortOpenInAnotherProgramWaitsUntilItIsClosedAndSaysWhoHasIt() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.rtu(units: [1: pad])
        defer { server.stop() }
        let rtuPort: String? = if case .rtu(let path) = server.endpoint { path } else { nil }
        let port = try #require(rtuPort)
        let holder = try ChildProcess("/bin/sh", ["-c", #"exec 3<>"$0"; echo open; exec sleep 600"#, port])
        // SIGKILL: it inherits the test runner's signal mask, where SIGTERM may be blocked.
        defer { kill(holder.process.processIdentifier, SIGKILL) }
        #expect(await eventually { holder.output.contains("open") })
        let folder = try TemporaryDirectory()
        let (config, profiles) = try ConfigLoader.parse("""
            hall: {id: test-hall}
            state-directory: \(folder.path)/state
            profiles: \(profilesDirectory)
            buses:
              - {id: line-a, \(server.endpoint.busKeys), response-timeout-ms: 200, poll-interval-ms: 50}
            devices:
              - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 1, window: "5"}
            sinks:
              - {type: sqlite, path: \(folder.path)/events.sqlite}
            """, file: "test.yaml", relativeTo: folder.path)
        let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        defer { stop.stop() }

        let said = "\(port) is open in sleep 600 (pid \(holder.process.processIdentifier)) too: two programs on one line "
            + "take each other's answers; close it"
        let waited = await eventually { await gateway.lineCounters().first?.down == said }
        let down = await gateway.lineCounters().first?.down
        #expect(waited, "\(String(describing: down))")
        #expect(await gateway.deviceStates().first?.online != true)
        kill(holder.process.processIdentifier, SIGKILL)
        _ = try await holder.wait()
        #expect(await eventually { await gateway.deviceStates().first?.online == true })
        stop.stop()
        await running.value
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

    @Test func aPortsStableNameIsTheLinkUdevKeepsForIt() throws {
        // As /dev/serial/by-id holds them: links named by the adapter, to the ttyUSB it is today.
        let folder = try TemporaryDirectory()
        let byId = folder.file("by-id")
        try FileManager.default.createDirectory(atPath: byId, withIntermediateDirectories: true)
        let terminal = try PseudoTerminal()
        let adapter = byId + "/usb-1a86_USB_Serial-if00-port0"
        try FileManager.default.createSymbolicLink(atPath: adapter, withDestinationPath: terminal.devicePath)
        try FileManager.default.createSymbolicLink(atPath: byId + "/usb-gone-if00-port0", withDestinationPath: "/dev/ttyUSB9")
        let links = SerialPortCatalog.stableLinks(in: byId)
        #expect(links[URL(fileURLWithPath: terminal.devicePath).resolvingSymlinksInPath().path] == adapter)
        #expect(SerialPortCatalog.stableLinks(in: folder.file("no-such-folder")).isEmpty)
    }
}
