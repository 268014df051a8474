import Foundation

/// A system call's failure in the words the gateway's messages use: lower case, as the clause of a sentence
/// (`cannot connect to 10.0.0.5:502: connection refused`), not strerror's capitalised title.
public enum SystemError {
    /// strerror's words for `code`.
    public static func words(errno code: Int32) -> String { String(cString: strerror(code)).lowercased() }

    /// The words of a Foundation error that carries an errno (a file that cannot be written); its own otherwise.
    public static func words(of error: any Error) -> String {
        guard let posix = (error as? CocoaError)?.underlying as? POSIXError else { return error.localizedDescription }
        return words(errno: posix.code.rawValue)
    }
}
