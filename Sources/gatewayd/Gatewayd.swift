import ArgumentParser
import DeviceGateway

@main
struct Gatewayd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatewayd",
        abstract: "The hall gateway: evaluator pads, call boards and ticket printers to one event stream.",
        version: GatewayInfo.version,
        subcommands: [Run.self, StatusCommand.self, Events.self, OutboxCommand.self, Ports.self, Decode.self, ConfigCommand.self,
                      ModbusCommand.self, ScanCommand.self, ProbeCommand.self, DisplayCommand.self, PrinterCommand.self,
                      PadCommand.self, CheckCommand.self, TraceCommand.self, Ratings.self],
        defaultSubcommand: Run.self
    )

    /// ArgumentParser's own `main`, except that wrong usage exits 2 as docs/cli.md promises, not its 64 (EX_USAGE):
    /// a script tells "wrong usage" the same way from every command and from every kind of usage error.
    static func main() async {
        // `run` is the default: a mistyped command would otherwise read as an argument of run, and print its usage.
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        if let first = CommandLine.arguments.dropFirst().first, !first.hasPrefix("-"), !names.contains(first) {
            printError("Error: unknown command '\(first)' (commands: \(names.dropLast().joined(separator: ", ")); see 'gatewayd --help')")
            exit(withError: ExitCode(CLIExit.usage))
        }
        do {
            var command = try await asyncParseAsRoot(nil)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            printError(fullMessage(for: error))
            exit(withError: ExitCode(CLIExit.usage))
        }
    }
}
