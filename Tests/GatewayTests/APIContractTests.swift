import DeviceGateway
import Foundation
import LocalAPI
import MockDevices
import Testing

/// schemathesis (PyPI, pinned in scripts/requirements-test.txt) against the document the API serves, the API in front
/// of a real gateway driving mock boards over Modbus RTU: no 5xx, and every response one the document declares
/// (status, content type, headers, body schema).
@Suite(.serialized) struct APIContractTests {
    /// Window 5 (a board, a pad and a tablet), window 7 (a board that never answers), a hall board, a ticket printer
    /// and the gateway's ticket numbering; the API on a loopback port.
    final class Hall: Sendable {
        let board = MockModbusBoard()
        let hallBoard = MockModbusBoard()
        let pad = MockModbusEvaluator(staffId: "0105")
        let server: MockModbusServer
        let printer: MockEscPosPrinter
        let folder: TemporaryDirectory
        let gateway: Gateway
        let stop = StopSignal()
        let running: Task<Void, Never>
        let api: Task<Void, any Error>
        let port: Int
        let token = "test-token-\(UInt64.random(in: 0...UInt64.max))"

        init() async throws {
            server = try MockModbusServer.rtu(units: [3: board, 4: pad, 6: hallBoard])
            let path = try #require(server.endpoint.devicePath)
            printer = try MockEscPosPrinter()
            folder = try TemporaryDirectory()
            let (config, profiles) = try ConfigLoader.parse("""
                hall: {id: test-hall}
                state-directory: \(folder.path)/state
                profiles: \(profilesDirectory)
                buses:
                  - {id: line-a, transport: modbus-rtu, port: \(path), response-timeout-ms: 100, poll-interval-ms: 50}
                  - {id: kiosk-1, transport: serial, port: \(printer.devicePath), poll-interval-ms: 100, response-timeout-ms: 200}
                devices:
                  - {id: board-w05, profile: modbus-window-board, bus: line-a, address: 3, window: "5"}
                  - {id: eval-w05, profile: modbus-evaluator-3key, bus: line-a, address: 4, window: "5"}
                  - {id: board-w07, profile: modbus-window-board, bus: line-a, address: 9, window: "7"}
                  - {id: board-hall, profile: modbus-window-board, bus: line-a, address: 6}
                  - {id: printer-1, profile: escpos-80mm, bus: kiosk-1, address: 1}
                terminals:
                  - {id: tablet-w05, window: "5", scale: five-level}
                tickets: {prefixes: [A, B], priority-prefixes: [V]}
                sinks:
                  - {type: sqlite, path: \(folder.path)/events.sqlite}
                """, file: "test.yaml", relativeTo: folder.path)
            let gateway = try Gateway(config: config, profiles: profiles, logger: CapturedLog().logger)
            self.gateway = gateway
            let stop = self.stop
            running = Task { await gateway.run(until: stop) }
            (self.api, port) = try await serveLocalAPI(gateway, token: token)
        }

        func stopAll() async {
            api.cancel()
            _ = await api.result
            stop.stop()
            await running.value
            server.stop()
            printer.stop()
        }

        /// A test that throws before `stopAll` still stops its gateway: left running, it would reopen its ports'
        /// paths, which a later test's mocks may be given.
        deinit {
            api.cancel()
            stop.stop()
        }
    }

    /// The hall's windows, devices, terminal, ticket prefixes and printer, often, in place of random values: without
    /// them nearly every command would be a 404 and the results' schemas never checked. The rest stay random.
    static let configuration = """
        [dictionaries.windows]
        values = ["5", "7"]
        [dictionaries.devices]
        values = ["board-w05", "board-hall", "board-w07", "eval-w05", "printer-1"]
        [dictionaries.terminals]
        values = ["tablet-w05"]
        [dictionaries.prefixes]
        values = ["A", "B", "V"]
        [dictionaries.printers]
        values = ["printer-1"]

        [parameters]
        "path.window" = { dictionary = "windows", probability = 0.8 }
        "path.device" = { dictionary = "devices", probability = 0.8 }
        "path.terminal" = { dictionary = "terminals", probability = 0.8 }
        "body.prefix" = { dictionary = "prefixes", probability = 0.5 }
        "body.printer" = { dictionary = "printers", probability = 0.5 }
        # A probe listens for up to 30 s when asked: short here, the requests' timeout is 10 s.
        "query.listen" = 0.2
        """

    @Test func theServedDocumentHoldsForEveryGeneratedRequest() async throws {
        let hall = try await Hall()
        let configuration = hall.folder.file("schemathesis.toml")
        try Self.configuration.write(toFile: configuration, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        // A fixed seed: a failure here reproduces with the same command. The working directory is the temporary
        // folder, so hypothesis's example database does not land in the checkout.
        let schemathesis = try await ChildProcess("/usr/bin/env", [
            "python3", "-m", "schemathesis.cli", "--config-file", configuration,
            "run", "http://127.0.0.1:\(hall.port)/openapi.json",
            "--header", "Authorization: Bearer \(hall.token)",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                + "response_headers_conformance,response_schema_conformance",
            "--phases", "examples,coverage,fuzzing", "--max-examples", "20", "--seed", "20261201",
            "--request-timeout", "10", "--no-color",
            // A stream for up to 30 s a request: documented, not checkable in bounded time.
            "--exclude-path", "/v1/buses/{bus}/trace"
        ], environment: ["NO_COLOR": "1"], workingDirectory: hall.folder.path).wait(timeout: .seconds(150))
        let elapsed = ContinuousClock.now - started
        // The generated requests reached the commands themselves, not only the 404s and 400s around them.
        let committed = Set(try await hall.gateway.outbox.entries(after: 0, limit: 100_000).map(\.type))
        #expect(committed.isSuperset(of: ["hall.call.displayed", "hall.ticket.issued"]), "\(committed)")
        await hall.stopAll()
        let output = schemathesis.standardOutput + schemathesis.standardError
        #expect(schemathesis.status == 0, "schemathesis found responses outside the document:\n\(output)")
        let selection = output.firstMatch(of: /Selected: (\d+)\/(\d+)/).map { (Int($0.1), Int($0.2)) }
        let tested = output.firstMatch(of: /Tested: (\d+)/).flatMap { Int($0.1) }
        #expect(tested != nil && tested == selection?.0, "every selected operation was tested:\n\(output)")
        // Every operation of the document but the trace stream.
        #expect(selection.map { ($0.1 ?? 0) - ($0.0 ?? 0) } == 1, "only the trace is left out:\n\(output)")
        let generated = output.firstMatch(of: /(\d+) generated/).flatMap { Int($0.1) } ?? 0
        #expect(generated >= 200, "\(generated) requests generated:\n\(output)")
        print("schemathesis: \(generated) requests in \(elapsed)")
    }
}
