/// One bus as the gateway drives it: a Modbus line or endpoint, or a raw serial line.
public protocol Bus: Actor {
    /// The bus's configuration.
    nonisolated var config: BusConfig { get }
    /// Polls until `stop` fires; what was read is committed before it returns.
    func run(until stop: StopSignal) async
    /// Carries out a command on one of the bus's devices.
    func send(_ command: HallCommand, to deviceId: String) async throws
    /// What the bus believes about each of its devices.
    func deviceStates() -> [DeviceState]
}
