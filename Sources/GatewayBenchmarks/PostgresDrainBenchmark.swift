/// Placeholder: the drain-postgres benchmark is not written yet.
enum PostgresDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        print("drain-postgres: not written yet")
    }
}
