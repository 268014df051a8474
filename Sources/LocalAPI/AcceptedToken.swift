import DeviceGateway
import Foundation
import Logging
import Synchronization

/// The token requests must bring. One from `api.token-file` is looked for again at most once a second, so that a token
/// replaced in the file is the only one taken within a second, without a restart (from an operator's trial: the old
/// one was taken until the next start, the new one refused). The gateway's own `api-token` does not change.
final class AcceptedToken: Sendable {
    private struct Current {
        var token: [UInt8]
        /// The file as last read (inode, size, modification time): a change of any is a new token.
        var version: [Int]
        var lookedAt: ContinuousClock.Instant
        /// The problem last said of the file, so that a file left broken is said once.
        var said: String?
        /// A request is looking at the file.
        var reading = false
    }

    private let file: String?
    private let logger: Logger
    private let current: Mutex<Current>

    init(_ token: String, file: String?, logger: Logger) {
        self.file = file
        self.logger = logger
        current = Mutex(Current(token: Array(token.utf8), version: file.map(Self.version(of:)) ?? [],
                                lookedAt: .now, said: nil))
    }

    /// Whether `given` is the token, compared in constant time.
    func matches(_ given: some Collection<UInt8>) -> Bool {
        let expected = token()
        let given = Array(given)
        var difference = given.count ^ expected.count
        for index in expected.indices { difference |= Int(expected[index] ^ (index < given.count ? given[index] : 0)) }
        return difference == 0
    }

    private func token() -> [UInt8] {
        // Looked at outside the lock, by one request at a time: a file that blocks must not hold every request.
        let due = current.withLock { current -> Bool in
            guard file != nil, !current.reading, ContinuousClock.now - current.lookedAt >= .seconds(1) else { return false }
            (current.lookedAt, current.reading) = (.now, true)
            return true
        }
        guard due, let file else { return current.withLock { $0.token } }
        let version = Self.version(of: file)
        let unchanged = current.withLock { $0.version == version }
        let read: Result<String, TokenFileProblem>? = unchanged ? nil : {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                return .failure(TokenFileProblem(description: "cannot be read"))
            }
            return APISettings.token(inFile: text).mapError { TokenFileProblem(description: $0.description) }
        }()
        return current.withLock { current in
            current.reading = false
            switch read {
            case nil:
                break
            case .success(let token):
                (current.token, current.version, current.said) = (Array(token.utf8), version, nil)
                logger.notice("api: the token in \(file) was replaced: the new one is taken, the one before no longer")
            case .failure(let problem) where current.said != problem.description:
                current.said = problem.description
                logger.warning("api.token-file \(file): \(problem); the token read before is still the one taken")
            case .failure:
                break
            }
            return current.token
        }
    }

    private struct TokenFileProblem: Error, CustomStringConvertible {
        var description: String
    }

    /// Changes when the file is replaced or written; empty when it cannot be looked at.
    private static func version(of file: String) -> [Int] {
        var status = stat()
        guard stat(file, &status) == 0 else { return [] }
        return [Int(status.st_ino), Int(status.st_size), status.st_mtim.tv_sec, status.st_mtim.tv_nsec]
    }
}
