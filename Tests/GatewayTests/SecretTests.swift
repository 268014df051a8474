import DeviceGateway
import Testing

/// A value holding a secret, printed the ways a service group, a log line or a debugger print it.
@Suite struct SecretTests {
    /// Shaped like the API's holders: a secret among ordinary fields.
    struct Holder {
        let name = "api"
        let token = Secret("6c0f7f22-not-for-any-log")
    }

    @Test func noDescriptionOfAHolderShowsTheSecret() {
        var dumped = ""
        dump(Holder(), to: &dumped)
        let optional: Secret? = Secret("6c0f7f22-not-for-any-log")
        for text in [String(describing: Holder()), String(reflecting: Holder()), "\(Holder())", dumped,
                     "\(optional as Any)"] {
            #expect(!text.contains("6c0f7f22") && text.contains("<redacted>"), "\(text)")
        }
        #expect(Holder().token.value == "6c0f7f22-not-for-any-log", "the wire still gets it")
    }
}
