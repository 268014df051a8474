import ArgumentParser

@main
struct Gatewayd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatewayd",
        abstract: "The hall gateway: evaluator pads, call boards and ticket printers to one event stream.",
        subcommands: [Run.self, Events.self, Ports.self, Decode.self, ConfigCommand.self],
        defaultSubcommand: Run.self
    )
}
