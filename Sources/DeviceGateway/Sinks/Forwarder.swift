import Logging

/// Moves committed events from the outbox to one sink, in order, at least once.
///
/// The sink's cursor advances only after the sink confirmed a batch, so a crash or a down sink
/// loses nothing: delivery resumes from the cursor, and the sink ignores what it already holds.
struct Forwarder: Sendable {
    let outbox: Outbox
    let sink: any EventSink
    let logger: Logger
    var batchSize = 500
    var idleInterval = Duration.milliseconds(200)

    /// Forwards until `stop` fires, then delivers what is left once more and returns.
    func run(until stop: StopSignal) async {
        var failing: String?
        var retryDelay = Duration.seconds(1)
        while true {
            let stopping = stop.isStopped
            do {
                while try await forwardBatch() {}
                if failing != nil { logger.notice("sink \(sink.name): delivering again") }
                failing = nil
                retryDelay = .seconds(1)
                if stopping { return }
                await stop.sleep(for: idleInterval)
            } catch {
                let text = "\(error)"
                if failing != text {
                    let backlog = (try? await outbox.backlog(sink: sink.name)).map(String.init) ?? "unknown"
                    logger.error("sink \(sink.name): delivery failed, \(backlog) events kept in the outbox: \(text)")
                }
                failing = text
                if stopping { return }
                await stop.sleep(for: retryDelay)
                retryDelay = min(retryDelay * 2, .seconds(30))
            }
        }
    }

    /// Delivers one batch; returns whether there may be more.
    private func forwardBatch() async throws -> Bool {
        let delivered = try await outbox.deliveredPosition(sink: sink.name)
        let entries = try await outbox.entries(after: delivered, limit: batchSize)
        guard let last = entries.last else { return false }
        try await sink.deliver(entries.map(\.event))
        try await outbox.markDelivered(sink: sink.name, through: last.position)
        return entries.count == batchSize
    }
}
