/// Placeholder: the drain-http benchmark is not written yet.
enum HTTPDrainBenchmark {
    static func run(_ arguments: [String]) async throws {
        print("drain-http: not written yet")
    }
}
