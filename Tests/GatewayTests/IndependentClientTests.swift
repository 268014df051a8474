import DeviceGateway
import Foundation
import MockDevices
import Testing

/// The mock pads checked with tools the project did not write: mbpoll (a real Modbus master, on
/// libmodbus, as technicians use it) reads and writes them over TCP and over RTU on a pseudo-terminal,
/// and the CloudEvents Python SDK validates what the demo hall produced.
@Suite struct IndependentClientTests {
    /// Registers as mbpoll prints them: `[ref]: value` lines.
    func parseMbpoll(_ output: String) -> [Int: Int] {
        var registers: [Int: Int] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("[") {
            let parts = line.dropFirst().split(separator: "]", maxSplits: 1)
            guard parts.count == 2, let reference = Int(parts[0]),
                let value = Int(parts[1].drop { $0 == ":" || $0 == " " || $0 == "\t" }.prefix { $0 != " " && $0 != "(" })
            else { continue }
            registers[reference] = value
        }
        return registers
    }

    func checkRegisterMap(read: [Int: Int], pad: MockModbusEvaluator) {
        // Documented in devices/modbus-evaluator-3key.yaml; mbpoll's references are 0-based here (-0).
        #expect(read[0] == 0b11, "ready, staff signed in")
        #expect(read[1] == 2, "two ratings since power-up")
        #expect(read[2] == 3, "last key 不满意")
        #expect(read[6] == 3, "three keys")
        #expect(read[8] == 0x3032 && read[9] == 0x3331, "staff id 0231")
        #expect(read[16] == 1 && read[17] == 3, "ring holds 满意 then 不满意")
        #expect(((read[3] ?? 0) << 16 | (read[4] ?? 0)) == 0x1234_5678)
    }

    @Test func mbpollReadsAndAcknowledgesAPadOverTCP() async throws {
        let pad = MockModbusEvaluator(staffId: "0231", bootId: 0x1234_5678)
        pad.press(.satisfied)
        pad.press(.dissatisfied)
        let server = try MockModbusServer.tcp(units: [1: pad])
        defer { server.stop() }
        let port = try #require(server.endpoint.tcpPort)
        let common = ["-m", "tcp", "-p", String(port), "-a", "1", "-0", "-t", "4", "-1"]
        let read = try await run("/usr/bin/mbpoll", common + ["-r", "0", "-c", "32", "127.0.0.1"])
        #expect(read.status == 0, "\(read.standardOutput)\(read.standardError)")
        checkRegisterMap(read: parseMbpoll(read.standardOutput), pad: pad)

        let write = try await run("/usr/bin/mbpoll", common + ["-r", "5", "127.0.0.1", "2"])
        #expect(write.status == 0, "\(write.standardOutput)\(write.standardError)")
        #expect(pad.acknowledged == 2)
    }

    @Test func mbpollReadsAPadOverRTUOnAPseudoTerminal() async throws {
        let pad = MockModbusEvaluator(staffId: "0231", bootId: 0x1234_5678)
        pad.press(.satisfied)
        pad.press(.dissatisfied)
        let quiet = MockModbusEvaluator(staffId: "9999")
        let server = try MockModbusServer.rtu(units: [1: quiet, 7: pad])
        defer { server.stop() }
        let path = try #require(server.endpoint.devicePath)
        let read = try await run(
            "/usr/bin/mbpoll",
            ["-m", "rtu", "-b", "9600", "-P", "none", "-a", "7", "-0", "-t", "4", "-r", "0", "-c", "32", "-1", path])
        #expect(read.status == 0, "\(read.standardOutput)\(read.standardError)")
        checkRegisterMap(read: parseMbpoll(read.standardOutput), pad: pad)
    }

    @Test func theDemoHallsEventsAreValidCloudEventsToTheCloudEventsSDK() async throws {
        let folder = try TemporaryDirectory()
        // Any free port for its API: another gateway on this machine may hold the default.
        let demo = try ChildProcess(gatewaydPath, ["run", "--api-port", "0"], workingDirectory: folder.path)
        // Until the hall has produced every kind of event the check below requires, as it stores them.
        let required = ["hall.rating.submitted", "hall.device.online", "hall.board.acknowledged",
                        "hall.printer.status_changed", "hall.caller.key_pressed", "hall.ticket.issued"]
        let produced = await eventually(timeout: .seconds(180)) {
            let stored = try? await run(gatewaydPath, ["events", "--json", "--limit", "100000"],
                                        workingDirectory: folder.path)
            return required.allSatisfy { stored?.standardOutput.contains(#""type":"\#($0)""#) == true }
        }
        demo.interrupt()
        #expect(produced, "the demo hall produced \(required.joined(separator: ", ")) within 180 s")
        let ran = try await demo.wait()
        #expect(ran.status == 0 && !ran.terminatedBySignal, "the demo stops cleanly on SIGINT: \(ran.standardError)")
        #expect(ran.standardOutput.contains("hall.rating.submitted"), "a readable line per event on stdout")

        let events = try await run(gatewaydPath, ["events", "--json", "--limit", "100000"], workingDirectory: folder.path)
        #expect(events.status == 0, "\(events.standardError)")
        let lines = events.standardOutput.split(separator: "\n")
        #expect(lines.count >= 12, "the hall's devices came online, citizens rated, boards showed calls")
        // Its queue system has the gateway number the tickets (the README's POST /v1/tickets with a prefix).
        #expect(events.standardOutput.contains(#""ticket":"A001""#), "the day's first ticket")

        let check = try await run(
            "/usr/bin/env",
            ["python3", repositoryRoot + "/scripts/check-cloudevents.py"] + required.flatMap { ["--require-type", $0] },
            input: events.standardOutput)
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        #expect(check.standardOutput.contains("\(lines.count) valid CloudEvents"), "\(check.standardOutput)")
    }
}
