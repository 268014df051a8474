import Foundation
import MockDevices
import Testing

/// A capture written by `gatewayd trace --save` replayed by `MockCaptureDevice`, with the built `gatewayd modbus read`
/// as the client: what the capture's device answered comes back, and a client that asks something else is told
/// where it left the capture. The last test replays a capture that `gatewayd trace` saved from a running daemon.
@Suite struct CaptureReplayTests {
    /// Address 1, read holding registers 0 and 1.
    static let request = "01 03 00 00 00 02 C4 0B"
    /// Address 1, 4 bytes: registers 0 = 1 and 1 = 2. The CRC from pymodbus 3.8.6, not from our code:
    /// `FramerRTU.compute_CRC(bytes.fromhex("01030400010002")).to_bytes(2, "big")` gives 2A 32.
    static let answer = "01 03 04 00 01 00 02 2A 32"

    /// A capture as `gatewayd trace line-a --save FILE` writes it: the header, then the request and its answer.
    func writeCapture(_ folder: TemporaryDirectory) throws -> String {
        func record(_ direction: String, _ hex: String, _ stream: String, _ time: String) -> String {
            #"{"direction":"\#(direction)","hex":"\#(hex)","stream":"\#(stream)","time":"\#(time)"}"#
        }
        let path = folder.file("line-a.trace")
        let lines = [
            #"{"bus":"line-a","capture":"hall-gateway-trace","line":"/dev/ttyUSB0 9600 8N1","version":1}"#,
            record("out", Self.request, "modbus-rtu-requests", "2026-12-01T10:00:00.000100+08:00"),
            record("in", Self.answer, "modbus-rtu-responses", "2026-12-01T10:00:00.012300+08:00"),
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The registers and values `modbus read --json` printed.
    func values(_ result: ProcessResult) throws -> [[Int]] {
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any],
            "\(result.standardOutput)\(result.standardError)")
        let values = try #require(report["values"] as? [[String: Int]])
        return values.map { [$0["register"] ?? -1, $0["value"] ?? -1] }
    }

    @Test func aModbusReadGetsTheCapturedAnswerAgainAndAgain() async throws {
        let folder = try TemporaryDirectory()
        let capture = try writeCapture(folder)
        // The fixture is a capture as gatewayd itself reads it.
        let decoded = try await run(gatewaydPath, ["decode", "--file", capture])
        #expect(decoded.status == 0, "\(decoded.standardOutput)\(decoded.standardError)")
        #expect(decoded.standardOutput.contains("records from line-a, 0 bytes of garbage"), "\(decoded.standardOutput)")

        let device = try MockCaptureDevice(capture: capture, loop: true)
        defer { device.stop() }
        #expect(device.recordCount == 2)

        let command = ["modbus", "read", "--port", device.devicePath, "--address", "1", "0", "--count", "2", "--json"]
        let first = try await run(gatewaydPath, command)
        #expect(first.status == 0, "\(first.standardError)")
        #expect(try values(first) == [[0, 1], [1, 2]])
        #expect(await eventually { device.replayed == 2 })

        // Looping: a client polling again is answered again from the first record.
        let second = try await run(gatewaydPath, command)
        #expect(second.status == 0, "\(second.standardError)")
        #expect(try values(second) == [[0, 1], [1, 2]])
        #expect(await eventually { device.replayed == 4 })
        #expect(device.divergence == nil, "\(String(describing: device.divergence))")
    }

    @Test func aClientAskingSomethingElseIsToldWhereItLeftTheCapture() async throws {
        let folder = try TemporaryDirectory()
        let device = try MockCaptureDevice(capture: try writeCapture(folder))
        defer { device.stop() }

        // Registers 1 and 2 instead of 0 and 1: the request differs at byte 3 (the start's low byte).
        let other = try await run(
            gatewaydPath,
            ["modbus", "read", "--port", device.devicePath, "-a", "1", "1", "-c", "2", "--timeout-ms", "200"])
        #expect(other.status == 1)
        #expect(other.standardError.contains("no answer from address 1"), "\(other.standardError)")
        #expect(await eventually { device.divergence != nil })
        let divergence = try #require(device.divergence)
        // Line 2 of the file holds the request; the CRC of 01 03 00 01 00 02 is 95 CB (pymodbus 3.8.6).
        #expect(
            divergence
                == MockCaptureDevice.Divergence(
                    line: 2, offset: 3, expected: [0x00, 0x00, 0x02, 0xC4, 0x0B], got: [0x01, 0x00, 0x02, 0x95, 0xCB]))
        #expect(
            divergence.description
                == "line 2 of the capture, byte 3: expected 00 00 02 C4 0B, got 01 00 02 95 CB")
        #expect(device.replayed == 0)
    }

    @Test func aClientGoingOnAfterTheEndOfTheCaptureIsADivergence() async throws {
        let folder = try TemporaryDirectory()
        let device = try MockCaptureDevice(capture: try writeCapture(folder))
        defer { device.stop() }

        let command = ["modbus", "read", "--port", device.devicePath, "-a", "1", "0", "-c", "2", "--timeout-ms", "200"]
        let first = try await run(gatewaydPath, command)
        #expect(first.status == 0, "\(first.standardError)")
        #expect(await eventually { device.replayed == 2 })
        #expect(device.divergence == nil)

        // Without loop the capture is over: the second request is not answered and is reported.
        let second = try await run(gatewaydPath, command)
        #expect(second.status == 1)
        #expect(await eventually { device.divergence != nil })
        let divergence = try #require(device.divergence)
        #expect(divergence.line == 4)
        #expect(divergence.expected.isEmpty)
        #expect(divergence.got == [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B])
        #expect(divergence.description.hasPrefix("after the end of the capture (line 4): got 01 03 00 00 00 02 C4 0B"))
    }

    @Test func aFileThatIsNotACaptureIsRefusedWithItsName() throws {
        let folder = try TemporaryDirectory()
        let path = folder.file("raw.bin")
        try "01 03 00 00 00 02 C4 0B\n".write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(throws: MockDeviceError.self) { try MockCaptureDevice(capture: path) }
        #expect(error.description == "\(path) line 1: not a JSON object")

        let wrong = folder.file("wrong.trace")
        try """
        {"bus":"line-a","capture":"hall-gateway-trace","version":1}
        {"direction":"sideways","hex":"01","stream":"modbus-rtu-requests","time":"2026-12-01T10:00:00Z"}
        """.write(toFile: wrong, atomically: true, encoding: .utf8)
        let direction = try #require(throws: MockDeviceError.self) { try MockCaptureDevice(capture: wrong) }
        #expect(direction.description == "\(wrong) line 2: \"direction\" must be \"out\" or \"in\"")
    }

    @Test func aCaptureSavedByGatewaydTraceReplaysToAModbusRead() async throws {
        let pad = MockModbusEvaluator(staffId: "0104")
        let server = try MockModbusServer.rtu(units: [4: pad])
        defer { server.stop() }
        let folder = try TemporaryDirectory()
        let config = folder.file("hall.yaml")
        try """
        hall: {id: replay-hall}
        state-directory: \(folder.path)/state
        profiles: \(profilesDirectory)
        buses:
          - {id: line-a, transport: modbus-rtu, port: \(try #require(server.endpoint.devicePath)), \
        response-timeout-ms: 200, poll-interval-ms: 100}
        devices:
          - {id: eval-w04, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "4"}
        sinks:
          - {type: sqlite, path: \(folder.path)/events.sqlite}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try ChildProcess(gatewaydPath, ["run", "--config", config, "--api-port", "0"])
        defer { daemon.interrupt() }
        #expect(await eventually { CLITests.apiURL(daemon) != nil }, "the daemon's API listens: \(daemon.output)")
        let api = try #require(CLITests.apiURL(daemon))
        let capture = folder.file("line-a.trace")
        let trace = try await run(
            gatewaydPath, ["trace", "line-a", "--seconds", "1", "--save", capture, "--config", config, "--api", api])
        #expect(trace.status == 0, "\(trace.standardError)")
        daemon.interrupt()
        _ = try await daemon.wait()

        // The first request the gateway wrote, and the answer after it, from the capture file itself.
        let lines = try String(contentsOfFile: capture, encoding: .utf8).split(separator: "\n").dropFirst()
        let records = try lines.map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let hex = try #require(object["hex"] as? String).split(separator: " ")
            return (out: object["direction"] as? String == "out", bytes: hex.compactMap { UInt8($0, radix: 16) })
        }
        let first = try #require(records.firstIndex { $0.out }, "\(lines)")
        let request = records[first].bytes
        try #require(request.count == 8 && request[0] == 4 && request[1] == 3, "a holding-register read: \(request)")
        let answer = try #require(records.dropFirst(first + 1).first, "an answer after \(request)").bytes
        let start = Int(request[2]) << 8 | Int(request[3])
        let count = Int(request[4]) << 8 | Int(request[5])
        try #require(answer.count == 5 + 2 * count, "\(answer)")
        let answered = (0..<count).map { Int(answer[3 + 2 * $0]) << 8 | Int(answer[4 + 2 * $0]) }
        #expect(answered == pad.registers[start..<start + count].map(Int.init))

        // The device side replayed: the same read by hand gets the gateway's answer back.
        let device = try MockCaptureDevice(capture: capture)
        defer { device.stop() }
        let read = try await run(
            gatewaydPath,
            ["modbus", "read", "--port", device.devicePath, "-a", "4", "\(start)", "-c", "\(count)", "--json"])
        #expect(read.status == 0, "\(read.standardError) \(String(describing: device.divergence))")
        #expect(try values(read).map { $0[1] } == answered)
        #expect(await eventually { device.replayed >= first + 2 })
        #expect(device.divergence == nil, "\(String(describing: device.divergence))")
    }
}
