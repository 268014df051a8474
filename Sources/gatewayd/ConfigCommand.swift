import ArgumentParser
import DeviceGateway

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with configuration files.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a configuration and the profiles it uses; every problem as FILE:LINE:COLUMN: KEY: what.",
            discussion: "Exit status 0 when the file is usable, 2 when it is not.")

        @Argument(help: "The configuration file.")
        var file: String

        func run() throws {
            do {
                let (config, _) = try ConfigLoader.load(path: file)
                print("\(file): OK (hall \(config.hall.id), \(config.buses.count) buses, \(config.devices.count) devices, \(config.sinks.count) sinks)")
            } catch {
                printError(error.description)
                throw ExitCode(2)
            }
        }
    }
}
