import ArgumentParser
import DeviceGateway
import Foundation

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with configuration files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a configuration and the profiles it uses; every problem as FILE:LINE:COLUMN: KEY: what.",
            discussion: """
                The files it names for the gateway to read (password-file, token-file, ca-file, certificate-file, \
                key-file) must be readable by the user running the check: run it as the gateway's user. A serial \
                port that is not there now is a warning (the gateway starts and keeps trying it: an adapter may be \
                plugged in later). Exit status 0 when the file is usable, 2 when it is not.
                """)

        @Argument(help: "The configuration file.")
        var file: String

        @Flag(help: "The verdict as JSON: the counts when usable, every issue (file, line, column, key, message) when not.")
        var json = false

        func run() throws {
            let config: GatewayConfig
            let library: ProfileLibrary
            do throws(ConfigError) {
                // From a docs trial: the demo's own file passed, which `run --config` refuses.
                if DemoProfiles.isDemoConfiguration(file) {
                    throw ConfigError(issues: [ConfigIssue(file: file, message: DemoProfiles.notAHallsConfiguration)])
                }
                // As the gateway will read it: the password, token and certificate files it names too.
                (config, library) = try ConfigLoader.load(path: file, checkingFiles: true)
            } catch {
                if json {
                    try Output.printJSON(Verdict(file: file, usable: false, issues: error.issues))
                } else {
                    printError(error.description)
                }
                throw ExitCode(CLIExit.usage)
            }
            let warnings = Self.absentPorts(config) + config.devices.compactMap { device in
                (try? library.profile(named: device.profile))?.withoutWindow(device)
            } + config.securityWarnings(file: file)
            if json {
                try Output.printJSON(Verdict(
                    file: file, usable: true, hall: config.hall.id, buses: config.buses.count,
                    devices: config.devices.count, sinks: config.sinks.count, issues: [], warnings: warnings))
            } else {
                for warning in warnings { printError("\(file): warning: \(warning)") }
                print("\(file): OK (hall \(config.hall.id), \(Output.counted(config.buses.count, "bus", plural: "buses")), "
                      + "\(Output.counted(config.devices.count, "device")), \(Output.counted(config.sinks.count, "sink"))"
                      + (warnings.isEmpty ? "" : ", \(Output.counted(warnings.count, "warning"))") + ")")
            }
        }

        /// Serial ports that are not there now, or are not devices: a mistyped path passes every other check.
        static func absentPorts(_ config: GatewayConfig) -> [String] {
            config.buses.compactMap { bus in
                switch bus.transport {
                case .modbusRTU(let serial), .serial(let serial): absence(of: serial.port, bus: bus.id)
                case .modbusTCP: nil
                }
            }
        }

        private static func absence(of port: String, bus: String) -> String? {
            var status = stat()
            guard stat(port, &status) == 0 else {
                return "bus \(bus): \(port) is not there now; the gateway will keep trying it "
                    + "(an adapter not plugged in? ls /dev/serial/by-id/)"
            }
            guard status.st_mode & S_IFMT == S_IFCHR else { return "bus \(bus): \(port) is not a serial device" }
            return nil
        }

        struct Verdict: Encodable {
            var file: String
            var usable: Bool
            var hall: String?
            var buses: Int?
            var devices: Int?
            var sinks: Int?
            var issues: [ConfigIssue]
            /// What does not stop the gateway but may be a mistake: a serial port not there now, a pad without a window.
            var warnings: [String] = []
        }
    }
}
