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
                      PadCommand.self, CheckCommand.self, TraceCommand.self],
        defaultSubcommand: Run.self
    )
}
