import DeviceGateway
import Foundation
import MockDevices
import Testing

/// `gatewayd modbus read|write` and `gatewayd scan`, run as the technician runs them, against mock pads and boards
/// on pseudo-terminals and loopback TCP.
@Suite struct ScanCommandTests {
    /// From a trial: scan looked for profiles only in the working folder and beside the binary, not where the hall's
    /// configuration keeps them (the README installs them in /usr/share/hall-gateway/devices).
    @Test func scanIdentifiesWithTheHallsOwnProfiles() async throws {
        let server = try MockModbusServer.rtu(units: [1: MockModbusEvaluator(staffId: "0101")])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let folder = try TemporaryDirectory()
        // The hall's profiles: the shipped pad's under the name this hall gave it.
        let profiles = folder.path + "/site-profiles"
        try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: true)
        let pad = try String(contentsOfFile: profilesDirectory + "/modbus-evaluator-3key.yaml", encoding: .utf8)
            .replacingOccurrences(of: "model: modbus-evaluator-3key", with: "model: site-pad")
        try pad.write(toFile: profiles + "/site-pad.yaml", atomically: true, encoding: .utf8)
        let config = folder.file("hall.yaml")
        try """
            hall: {id: site-hall}
            state-directory: \(folder.path)/state
            profiles: \(profiles)
            buses:
              - {id: line-a, transport: modbus-rtu, port: \(path)}
            devices:
              - {id: eval-w01, profile: site-pad, bus: line-a, address: 1, window: "1"}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let scan = try await run(
            gatewaydPath, ["scan", "--port", path, "--from", "1", "--to", "2", "--timeout-ms", "60"],
            environment: ["HALL_GATEWAY_CONFIG": config], workingDirectory: folder.path)
        #expect(scan.status == 0, "\(scan.standardError)")
        let row = scan.standardOutput.split(separator: "\n").first { $0.hasPrefix("1 ") }
        #expect(row?.contains("site-pad") == true, "\(scan.standardOutput)")
    }

    @Test func modbusReadAndWriteOverRTU() async throws {
        let pad = MockModbusEvaluator(staffId: "0105")
        let server = try MockModbusServer.rtu(units: [3: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)

        let table = try await run(
            gatewaydPath, ["modbus", "read", "--port", path, "--address", "3", "6", "--count", "2"])
        #expect(table.status == 0, "\(table.standardError)")
        let lines = table.standardOutput.split(separator: "\n").map(String.init)
        #expect(
            lines.first?.hasPrefix("address 3 on \(path) at 9600 8N1: 2 holding registers from 6") == true, "\(lines)")
        // Register 6 is the pad's key count, 7 its model code 0x4856, in hex and decimal.
        #expect(lines.contains { $0.hasPrefix("6 (0x0006)") && $0.contains("0x0003") && $0.contains(" 3 ") })
        #expect(lines.contains { $0.hasPrefix("7 (0x0007)") && $0.contains("0x4856") && $0.contains("18518") })

        let write = try await run(gatewaydPath, ["modbus", "write", "--port", path, "--address", "3", "5", "0x2A"])
        #expect(write.status == 0, "\(write.standardError)")
        #expect(write.standardOutput.hasPrefix("address 3 on \(path) at 9600 8N1: wrote 42 to holding register 5, "),
                "\(write.standardOutput)")
        #expect(pad.acknowledged == 42)
        // A broadcast in words too (from a docs trial: `writeSingleRegister(address: 12, value: 0) sent`).
        let broadcast = try await run(gatewaydPath, ["modbus", "write", "--port", path, "--address", "0", "5", "42"])
        #expect(broadcast.standardOutput == "broadcast on \(path) at 9600 8N1: wrote 42 to holding register 5 of every "
                + "device (none answers a broadcast)\n", "\(broadcast.standardOutput)\(broadcast.standardError)")

        let json = try await run(gatewaydPath, ["modbus", "read", "--port", path, "-a", "3", "5", "-c", "3", "--json"])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let values = try #require(report["values"] as? [[String: Int]])
        #expect(values.map { $0["register"] } == [5, 6, 7])
        #expect(values.map { $0["value"] } == [42, 3, 0x4856])

        // The pad has no coils: its exception, in words, and exit status 1.
        let coils = try await run(gatewaydPath, ["modbus", "read", "--port", path, "-a", "3", "--type", "coil", "0"])
        #expect(coils.status == 1)
        #expect(
            coils.standardError.contains("refused function 01: exception 02 illegal data address"),
            "\(coils.standardError)")

        let silent = try await run(
            gatewaydPath, ["modbus", "read", "--port", path, "-a", "9", "--timeout-ms", "100", "0"])
        #expect(silent.status == 1)
        #expect(
            silent.standardError.contains(
                "no answer from address 9 at 9600 8N1 on \(path) within 100 ms: check wiring A/B, baud, address, termination"
            ),
            "\(silent.standardError)")

        let missing = try await run(gatewaydPath, ["modbus", "read", "--port", "/dev/ttyUSB-none", "-a", "1", "0"])
        #expect(missing.status == 4)
        #expect(
            missing.standardError.contains("cannot open /dev/ttyUSB-none: no such device"), "\(missing.standardError)")
    }

    @Test func modbusReadOverTCPAndAPortWithoutPermission() async throws {
        let board = MockModbusBoard()
        let server = try MockModbusServer.tcp(units: [1: board])
        defer { server.stop() }
        let port = try #require(server.endpoint.tcpPort)
        let read = try await run(
            gatewaydPath,
            [
                "modbus", "read", "--host", "127.0.0.1", "--port", "\(port)", "--unit", "1",
                "4", "--count", "2", "--json",
            ])
        #expect(read.status == 0, "\(read.standardError)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(read.standardOutput.utf8)) as? [String: Any])
        // Register 4: 35.0 °C in tenths; 5: the board's model code.
        #expect((report["values"] as? [[String: Int]])?.map { $0["value"] } == [350, 0x4C42])

        let write = try await run(
            gatewaydPath,
            [
                "modbus", "write", "--host", "127.0.0.1", "--port", "\(port)", "--unit", "1",
                "--multiple", "1", "1",
            ])
        #expect(write.status == 0, "\(write.standardError)")
        #expect(board.registers[MockModbusBoard.Register.mode] == 1)

        // A device file the user may not open, whose mode gives its group nothing: joining the group would not help
        // (from a docs trial: a root-owned 0600 node was said to be the dialout group's). Root opens anything, so as
        // root the command runs as nobody (setpriv, util-linux).
        let folder = try TemporaryDirectory()
        chmod(folder.path, 0o755)
        let locked = folder.file("ttyUSB9")
        _ = FileManager.default.createFile(atPath: locked, contents: nil, attributes: [.posixPermissions: 0])
        let command = ["modbus", "read", "--port", locked, "0"]
        let denied =
            getuid() == 0
            ? try await run(
                "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", gatewaydPath] + command)
            : try await run(gatewaydPath, command)
        #expect(denied.status == 4)
        #expect(
            denied.standardError.contains("cannot open \(locked): permission denied (owner ")
                && denied.standardError.contains(", mode 0000: the group may not read and write it); give the port to "
                                                 + "the dialout group with a udev rule")
                && !denied.standardError.contains("usermod"), "\(denied.standardError)")
    }

    @Test func aPortThatMayNotBeOpenedIsSaidWithWhatWouldHelp() {
        // The group may read and write: joining it helps.
        #expect(ModbusDirectClient.permissionDenied("/dev/ttyUSB0", owner: "root", group: "dialout", mode: 0o20660) == """
            cannot open /dev/ttyUSB0: permission denied (owner root, group dialout, mode 0660); add your user to the \
            dialout group: sudo usermod -aG dialout $USER, then log in again
            """)
        // It may not (read only is not enough): no group helps until the port is given to one.
        for mode: UInt32 in [0o20600, 0o20640] {
            let said = ModbusDirectClient.permissionDenied("/dev/ttyUSB0", owner: "root", group: "root", mode: mode)
            #expect(said == """
                cannot open /dev/ttyUSB0: permission denied (owner root, group root, mode 0\(String(mode & 0o777, radix: 8)): \
                the group may not read and write it); give the port to the dialout group with a udev rule \
                (GROUP="dialout", MODE="0660"), or until the next plug-in: sudo chgrp dialout /dev/ttyUSB0 && \
                sudo chmod 660 /dev/ttyUSB0
                """)
        }
    }

    /// The project's codec checked against an independent client: mbpoll (libmodbus) reads the same registers.
    @Test func modbusReadAgreesWithMbpoll() async throws {
        let pad = MockModbusEvaluator(staffId: "A7-0105", bootId: 0xDEAD_BEEF)
        pad.press(.dissatisfied)
        let server = try MockModbusServer.rtu(units: [5: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let ours = try await run(
            gatewaydPath, ["modbus", "read", "--port", path, "-a", "5", "0", "-c", "16", "--json"])
        #expect(ours.status == 0, "\(ours.standardError)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(ours.standardOutput.utf8)) as? [String: Any])
        let values = try #require(report["values"] as? [[String: Int]]).compactMap { $0["value"] }

        let mbpoll = try await run(
            "/usr/bin/mbpoll",
            [
                "-m", "rtu", "-a", "5", "-b", "9600", "-P", "none", "-t", "4",
                "-0", "-r", "0", "-c", "16", "-1", "-o", "1", path,
            ])
        #expect(mbpoll.status == 0, "\(mbpoll.standardOutput) \(mbpoll.standardError)")
        // mbpoll prints `[0]: 	3` per register.
        let theirs = mbpoll.standardOutput.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix("["), let colon = line.firstIndex(of: ":") else { return nil }
            // `[3]: 	57005 (-8531)`: the unsigned value first.
            return line[line.index(after: colon)...].split(separator: " ").first
                .flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        #expect(theirs.count == 16, "\(mbpoll.standardOutput)")
        #expect(values == theirs)
        #expect(values[1] == 1 && values[2] == 3 && values[3] == 0xDEAD && values[4] == 0xBEEF)
    }

    /// A new hall configured from the wire: scan finds and identifies every pad and board, writes the devices, the
    /// written file passes `config check`, and a gateway on it reads every device.
    @Test func aHallConfiguredByScanAlone() async throws {
        let pads = [
            1: MockModbusEvaluator(staffId: "0101"), 2: MockModbusEvaluator(staffId: "0102", keys: 5),
            4: MockModbusEvaluator(staffId: "0104"),
        ]
        let boards = [11: MockModbusBoard(), 12: MockModbusBoard()]
        var units: [Int: any MockModbusUnit] = pads
        for (address, board) in boards { units[address] = board }
        let server = try MockModbusServer.rtu(units: units)
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let folder = try TemporaryDirectory()
        let config = folder.file("hall.yaml")

        let scan = try await run(
            gatewaydPath,
            [
                "scan", "--port", path, "--from", "1", "--to", "14", "--timeout-ms", "60", "--profiles",
                profilesDirectory,
                "--write-config", config, "--hall-id", "scanned-hall", "--state-directory", folder.file("state"),
            ])
        #expect(scan.status == 0, "\(scan.standardError)")
        let rows = scan.standardOutput.split(separator: "\n").map(String.init)
        #expect(rows.first?.contains("addresses 1…14") == true && rows.first?.contains("5 answered") == true, "\(rows)")
        func row(_ address: Int) -> String? { rows.first { $0.hasPrefix("\(address) ") } }
        #expect(row(1)?.contains("modbus-evaluator-3key") == true)
        #expect(row(2)?.contains("modbus-evaluator-5level") == true)
        #expect(row(4)?.contains("modbus-evaluator-3key") == true)
        #expect(row(11)?.contains("modbus-window-board") == true)
        #expect(row(12)?.contains("modbus-window-board") == true)
        #expect(row(3) == nil)

        let check = try await run(gatewaydPath, ["config", "check", config])
        #expect(
            check.status == 0, "\(check.standardError)\n\((try? String(contentsOfFile: config, encoding: .utf8)) ?? "")"
        )
        #expect(check.standardOutput.contains("1 bus, 5 devices"))

        let (loaded, profiles) = try ConfigLoader.load(path: config)
        #expect(Set(loaded.devices.map(\.address)) == [1, 2, 4, 11, 12])
        #expect(loaded.devices.first { $0.address == 2 }?.profile == "modbus-evaluator-5level")
        var fast = loaded
        fast.buses = fast.buses.map {
            var bus = $0
            bus.pollInterval = .milliseconds(50)
            return bus
        }
        let gateway = try Gateway(config: fast, profiles: profiles, logger: CapturedLog().logger)
        let stop = StopSignal()
        let running = Task { await gateway.run(until: stop) }
        let everyDeviceRead = await eventually {
            let states = await gateway.deviceStates()
            return states.count == 5 && states.allSatisfy { $0.online == true && $0.counters.transactions > 0 }
        }
        let states = await gateway.deviceStates().map { "\($0.device) \(String(describing: $0.online))" }
        stop.stop()
        await running.value
        #expect(everyDeviceRead, "\(states)")
    }

    @Test func aConfigThatCouldNotBeWrittenIsSaidBeforeTheScan() async throws {
        // Found by a technician: the scan ran its minutes, then lost its findings to a folder it could not write.
        // Root writes anywhere, so as root the command runs as nobody (setpriv, util-linux).
        let folder = try TemporaryDirectory()
        chmod(folder.path, getuid() == 0 ? 0o755 : 0o555)
        let user = getuid() == 0 ? "nobody" : SystemUser.name
        let target = folder.file("hall.yaml")
        let command = ["scan", "--port", folder.file("ttyUSB9"), "--write-config", target]
        let refused =
            getuid() == 0
            ? try await run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", gatewaydPath] + command)
            : try await run(gatewaydPath, command)
        #expect(refused.status == 2, "\(refused.standardError)")
        #expect(refused.standardError.contains("--write-config \(target): user \(user) cannot write in \(folder.path) "
                                               + "(permission denied)"), "\(refused.standardError)")
        #expect(!refused.standardError.contains("ttyUSB9"), "refused before the port is opened: \(refused.standardError)")
    }

    @Test func scanFindsAMisaddressedPad() async throws {
        // The configuration says the pad of window 3 is at address 3; it was set to 7.
        let server = try MockModbusServer.rtu(units: [7: MockModbusEvaluator(staffId: "0103")])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let probe = try await run(
            gatewaydPath, ["modbus", "read", "--port", path, "-a", "3", "--timeout-ms", "100", "0"])
        #expect(probe.status == 1)
        let scan = try await run(
            gatewaydPath,
            [
                "scan", "--port", path, "--from", "1", "--to", "10", "--timeout-ms", "50",
                "--profiles", profilesDirectory, "--json",
            ])
        #expect(scan.status == 0, "\(scan.standardError)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(scan.standardOutput.utf8)) as? [String: Any])
        let found = try #require(report["found"] as? [[String: Any]])
        #expect(found.map { $0["address"] as? Int } == [7])
        #expect(found.first?["profile"] as? String == "modbus-evaluator-3key")
    }

    @Test func theSweepFindsAPadAtAnotherBaud() async throws {
        // The configuration says 9600; the pad was set to 19200.
        let server = try MockModbusServer.rtu(units: [4: MockModbusEvaluator(staffId: "0104", keys: 5)], baud: 19200)
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let scan = try await run(
            gatewaydPath,
            [
                "scan", "--port", path, "--baud", "9600", "--from", "1", "--to", "6",
                "--timeout-ms", "50", "--profiles", profilesDirectory,
            ])
        #expect(scan.status == 1)
        #expect(scan.standardOutput.contains("0 answered"))
        #expect(scan.standardError.contains("nobody answered at 9600 8N1") && scan.standardError.contains("--sweep"))

        let sweep = try await run(
            gatewaydPath,
            [
                "scan", "--port", path, "--sweep", "--address", "4", "--timeout-ms", "50",
                "--profiles", profilesDirectory,
            ])
        #expect(sweep.status == 0, "\(sweep.standardError)")
        let lines = sweep.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("9600 8N1") && $0.contains("silent") })
        #expect(lines.contains { $0.hasPrefix("19200 8N1") && $0.contains("answered") })
        #expect(
            lines.last == "address 4 answers at 19200 8N1 on \(path): modbus-evaluator-5level; set the bus to baud "
                + "19200, parity none", "\(lines)")
    }

    @Test func scanOverTCPAndListeningForAnFF68Line() async throws {
        let server = try MockModbusServer.tcp(units: [2: MockModbusBoard()])
        defer { server.stop() }
        let port = try #require(server.endpoint.tcpPort)
        let scan = try await run(
            gatewaydPath,
            [
                "scan", "--host", "127.0.0.1", "--port", "\(port)", "--from", "1", "--to", "3",
                "--timeout-ms", "100", "--profiles", profilesDirectory,
            ])
        #expect(scan.status == 0, "\(scan.standardError)")
        #expect(
            scan.standardOutput.split(separator: "\n").contains {
                $0.hasPrefix("2 ") && $0.contains("modbus-window-board")
            },
            "\(scan.standardOutput)")

        // Behind a Modbus TCP converter an empty address is answered by the converter itself (exception 0B): nobody.
        let converter = try MockModbusServer.tcp(units: [2: MockModbusBoard()], asConverter: true)
        defer { converter.stop() }
        let behindConverter = try await run(
            gatewaydPath,
            [
                "scan", "--host", "127.0.0.1", "--port", "\(try #require(converter.endpoint.tcpPort))", "--from", "1",
                "--to", "3", "--timeout-ms", "100", "--profiles", profilesDirectory,
            ])
        #expect(behindConverter.status == 0, "\(behindConverter.standardError)")
        let rows = behindConverter.standardOutput.split(separator: "\n")
        #expect(rows.contains { $0.hasPrefix("2 ") && $0.contains("modbus-window-board") }, "\(behindConverter.standardOutput)")
        #expect(!rows.contains { $0.hasPrefix("1 ") || $0.hasPrefix("3 ") }, "\(behindConverter.standardOutput)")

        // FF 68 pads speak only when pressed: a pad repeating its key frame is heard at the first baud tried.
        let bus = try MockFF68Bus()
        defer { bus.stop() }
        bus.pressEvaluatorKey(2, address: 9)
        let listen = try await run(
            gatewaydPath, ["scan", "--port", bus.devicePath, "--listen", "0.8", "--family", "ff68"])
        #expect(listen.status == 0, "\(listen.standardError)")
        #expect(listen.standardOutput.contains("frames at 9600 8N1 on \(bus.devicePath)"), "\(listen.standardOutput)")
        #expect(listen.standardOutput.contains("valid frames from address 9"))
    }

    @Test func scanOfOnbonControllersAndASweepForAPrinter() async throws {
        let boards = try MockOnbonBoards(addresses: [3, 5])
        defer { boards.stop() }
        let scan = try await run(
            gatewaydPath,
            [
                "scan", "--port", boards.devicePath, "--family", "onbon", "--from", "1",
                "--to", "6", "--timeout-ms", "100", "--json",
            ])
        #expect(scan.status == 0, "\(scan.standardError)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(scan.standardOutput.utf8)) as? [String: Any])
        let found = try #require(report["found"] as? [[String: Any]])
        #expect(found.map { $0["address"] as? Int } == [3, 5])
        #expect((found.first?["answer"] as? String)?.hasPrefix("Onbon controller") == true)

        let printer = try MockEscPosPrinter()
        defer { printer.stop() }
        let sweep = try await run(
            gatewaydPath, ["scan", "--port", printer.devicePath, "--family", "escpos", "--sweep"])
        #expect(sweep.status == 0, "\(sweep.standardError)")
        #expect(sweep.standardOutput.contains("ESC/POS printer, status 0x12: online"), "\(sweep.standardOutput)")
        #expect(sweep.standardOutput.contains("the escpos device answers at 9600 8N1 on \(printer.devicePath)"))
    }
}
