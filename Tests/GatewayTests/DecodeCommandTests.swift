import DeviceGateway
import Foundation
import Protocols
import Testing

/// `gatewayd decode`: a technician pastes captured bytes and sees the frames and the garbage.
@Suite struct DecodeCommandTests {
    @Test func aPublishedOnbonPingIsOneFrameAndNoiseIsCounted() async throws {
        // The ping frame published with app-tools-zxw 2.2.4 (see OnbonTests), after two bytes of line noise.
        let ping = "00 13 A5 A5 A5 A5 A5 A5 A5 A5 01 00 00 80 00 00 00 00 00 00 FE 02 05 00 A2 00 01 00 00 68 F8 5A"
        let result = try await run(gatewaydPath, ["decode", "--stream", "onbon", ping])
        #expect(result.status == 1, "noise is garbage: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines.first?.hasPrefix("0  00 13") == true && lines.first?.contains("REJECTED") == true, "\(lines)")
        #expect(lines.dropFirst().first?.contains("host → screen 1, command A2 00") == true, "\(lines)")
        #expect(lines.last == "1 frame, 1 rejected run: 2 of 32 bytes not part of any frame")
    }

    @Test func aPrinterStatusReplyIsSaidAsTheAnswerToEachRequest() async throws {
        // python-escpos 3.1 (escpos/constants.py) reads DLE EOT 4's 0x72 as no paper and 0x1E as low paper; which
        // request a lone reply answers is the host's to know (from a docs trial: these had no words).
        let result = try await run(gatewaydPath, ["decode", "--stream", "escpos-status", "72 1E 12"])
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(lines.first?.hasSuffix("status reply 72 (to DLE EOT 1: all well; to DLE EOT 2: paper-out, error; "
                                       + "to DLE EOT 3: unrecoverable-error, auto-recoverable-error; to DLE EOT 4: paper-out)") == true,
                "\(lines)")
        #expect(lines.dropFirst().first?.hasSuffix("to DLE EOT 4: paper-near-end)") == true, "\(lines)")
        #expect(lines.dropFirst(2).first?.hasSuffix("status reply 12 (all well)") == true, "\(lines)")
    }

    @Test func aListenToOneDeviceKeepsItsOwnFramesAndAllOfAStreamWithoutAddresses() throws {
        // FF 68: the pad at 3 and the caller at 33 on one line; a listen to the pad keeps the pad's frame only.
        let pad: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x03, 0x11, 0x02, 0x16, 0x16]
        let caller: [UInt8] = [0xFF, 0x68, 0x03, 0x03, 0x68, 0x21, 0x11, 0x0C, 0x3E, 0x16]
        let heard = WireInspector.frames(of: 3, in: caller + pad, as: .ff68Devices, ff68Roles: [3: .evaluator, 33: .caller])
        #expect(heard.bytes == pad, "\(heard.words)")
        // ESC/POS names no device: a printer's status replies are its own (from a second read: all were dropped).
        let printer = WireInspector.frames(of: 1, in: [0x12, 0x72], as: .escPosStatus)
        #expect(printer.bytes == [0x12, 0x72] && printer.words.count == 2, "\(printer.words)")
    }

    @Test func badInputSaysWhatIsWrong() async throws {
        let notHex = try await run(gatewaydPath, ["decode", "--stream", "ff68", "FF 6"])
        #expect(notHex.status == 2, "docs/cli.md: 2 for input that is not hex")
        #expect(notHex.standardError.contains("not hex bytes"))
        let unknown = try await run(gatewaydPath, ["decode", "--stream", "bacnet", "00"])
        #expect(unknown.status == 2)
        #expect(unknown.standardError.contains("unknown stream 'bacnet'"))
    }

    @Test func aCapturesTimesAreShownInTheHallsZoneAsTraceShowedThem() async throws {
        let folder = try TemporaryDirectory()
        let capture = folder.file("line-a.trace")
        try """
            {"bus":"line-a","capture":"hall-gateway-trace","line":"/dev/ttyUSB0","timeZone":"Asia/Shanghai","version":1}
            {"direction":"out","hex":"01 03 00 00 00 02 C4 0B","stream":"modbus-rtu-requests","time":"2026-11-25T01:30:00.000000Z"}
            {"direction":"in","hex":"01 03 04 00 03 00 00 0A 33","stream":"modbus-rtu-responses","time":"2026-11-25T01:30:00.291864Z"}

            """.write(toFile: capture, atomically: true, encoding: .utf8)
        // The machine's clock on UTC, as a hall's gateway often is: the hall's 09:30 all the same.
        let result = try await run(gatewaydPath, ["decode", "--file", capture], environment: ["TZ": "UTC"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(
            result.standardOutput.hasPrefix("09:30:00.000 → modbus-rtu-requests"), "\(result.standardOutput)")
        // Cut to the millisecond, not rounded up (from a trial: answers stamped before their requests).
        #expect(result.standardOutput.contains("\n09:30:00.291 ← modbus-rtu-responses"), "\(result.standardOutput)")
    }

    @Test func anFF68FrameIsReadForTheSideThatSentItAndTheDeviceAtItsAddress() {
        func words(_ frame: FF68Frame, _ stream: WireInspector.Stream, _ roles: [UInt8: WireInspector.FF68Role] = [:])
            -> String?
        {
            WireInspector.inspect(frame.encode(), as: stream, ff68Roles: roles).items.first?.frame
        }
        let roles: [UInt8: WireInspector.FF68Role] = [3: .evaluator, 33: .caller]
        let open = FF68Frame(address: 3, function: 0x01, data: [0x0B])
        let callNext = FF68Frame(address: 33, function: 0x01, data: [0x0C])
        let keyAcknowledged = FF68Frame(address: 3, function: 0x01, data: [0x02])
        // Known sender and device: one reading.
        #expect(words(open, .ff68Host, roles) == "address 3, function 01, open an evaluation")
        #expect(words(callNext, .ff68Devices, roles) == "address 33, function 01, caller keys 0C (call-next)")
        #expect(words(callNext, .ff68Host, roles) == "address 33, function 01, caller keys 0C (call-next) acknowledged")
        #expect(words(keyAcknowledged, .ff68Host, roles) == "address 3, function 01, evaluator key 2 acknowledged")
        // The host's frame coming back on a two-wire line is said to be that.
        #expect(words(keyAcknowledged, .ff68Devices, roles)
                == "address 3, function 01, evaluator key 2 acknowledged (the host's frame, heard back)")
        #expect(words(.callerDisplay(address: 33, FF68CallerDisplay(waiting: [0, 0, 5], ticket: [1, 2, 3])), .ff68Devices, roles)
                == #"address 33, function 02, caller display "005123" (the host's frame, heard back)"#)
        // The sender known, the device not (an address the configuration lacks): what is left is said.
        #expect(words(open, .ff68Host)
                == "address 3, function 01, open an evaluation, or caller keys 0B (evaluate) acknowledged")
        #expect(words(callNext, .ff68Devices) == "address 33, function 01, caller keys 0C (call-next)")
        // Neither known (`decode -s ff68` of a capture): the device's reading first, then the host's.
        #expect(words(keyAcknowledged, .ff68)
                == "address 3, function 01, caller keys 02 (no meaning in the protocol), or from the host: evaluator key 2 acknowledged")
    }

    @Test func hexIsReadInTheWaysTechniciansWriteIt() {
        #expect(WireInspector.bytes(fromHex: "0x01,0x03 00:0a") == [0x01, 0x03, 0x00, 0x0A])
        #expect(WireInspector.bytes(fromHex: "0G") == nil)
    }
}
