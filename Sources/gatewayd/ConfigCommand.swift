import ArgumentParser
import DeviceGateway

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with configuration files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a configuration and the profiles it uses; every problem as FILE:LINE:COLUMN: KEY: what.",
            discussion: """
                The files it names for the gateway to read (password-file, token-file, ca-file, certificate-file, \
                key-file) must be readable by the user running the check: run it as the gateway's user. Exit status 0 \
                when the file is usable, 2 when it is not.
                """)

        @Argument(help: "The configuration file.")
        var file: String

        @Flag(help: "The verdict as JSON: the counts when usable, every issue (file, line, column, key, message) when not.")
        var json = false

        func run() throws {
            let config: GatewayConfig
            do {
                // As the gateway will read it: the password, token and certificate files it names too.
                (config, _) = try ConfigLoader.load(path: file, checkingFiles: true)
            } catch {
                if json {
                    try Output.printJSON(Verdict(file: file, usable: false, issues: error.issues))
                } else {
                    printError(error.description)
                }
                throw ExitCode(CLIExit.usage)
            }
            if json {
                try Output.printJSON(Verdict(
                    file: file, usable: true, hall: config.hall.id, buses: config.buses.count,
                    devices: config.devices.count, sinks: config.sinks.count, issues: []))
            } else {
                print("\(file): OK (hall \(config.hall.id), \(Output.counted(config.buses.count, "bus", plural: "buses")), "
                      + "\(Output.counted(config.devices.count, "device")), \(Output.counted(config.sinks.count, "sink")))")
            }
        }

        struct Verdict: Encodable {
            var file: String
            var usable: Bool
            var hall: String?
            var buses: Int?
            var devices: Int?
            var sinks: Int?
            var issues: [ConfigIssue]
        }
    }
}
