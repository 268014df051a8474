/// Placeholder: the drain-mqtt benchmark is not written yet.
enum MQTTDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        print("drain-mqtt: not written yet")
    }
}
