/// How many of what a mock device was sent (frames, packets, tickets, texts) it keeps: the newest, so that a demo hall
/// left running for days does not grow, while a test still sees everything it sent.
public let mockHistoryLimit = 100

extension Array {
    /// Appends `element`, dropping the oldest beyond `mockHistoryLimit`.
    mutating func appendKeepingNewest(_ element: Element) {
        append(element)
        if count > mockHistoryLimit { removeFirst(count - mockHistoryLimit) }
    }
}
