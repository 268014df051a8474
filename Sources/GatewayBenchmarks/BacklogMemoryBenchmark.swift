/// Placeholder: the backlog-rss benchmark is not written yet.
enum BacklogMemoryBenchmark {
    static func run(_ arguments: [String]) async throws {
        print("backlog-rss: not written yet")
    }
}
