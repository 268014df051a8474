/// Placeholder: the ingest benchmark is not written yet.
enum OutboxIngestBenchmark {
    static func run(_ arguments: [String]) async throws {
        print("ingest: not written yet")
    }
}
