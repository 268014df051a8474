/// A level on the national five-level 好差评 scale (政务服务好差评).
public enum NationalRatingLevel: Int, Sendable, Codable, CaseIterable, Comparable {
    case veryDissatisfied = 1
    case dissatisfied = 2
    case basicallySatisfied = 3
    case satisfied = 4
    case verySatisfied = 5

    /// The level's name as the national scheme writes it.
    public var label: String {
        switch self {
        case .verySatisfied: "非常满意"
        case .satisfied: "满意"
        case .basicallySatisfied: "基本满意"
        case .dissatisfied: "不满意"
        case .veryDissatisfied: "非常不满意"
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How a device's own keys map onto the national scale. Every profile states this explicitly.
public struct RatingScale: Sendable, Equatable {
    /// One key of the device.
    public struct Key: Sendable, Equatable {
        /// The raw code the device reports for the key.
        public var code: Int
        /// The key's label as printed on the pad (e.g. 满意).
        public var label: String
        /// The national level the key counts as.
        public var level: NationalRatingLevel

        /// Creates a key mapping.
        public init(code: Int, label: String, level: NationalRatingLevel) {
            self.code = code
            self.label = label
            self.level = level
        }
    }

    /// The scale's name as profiles and events spell it, e.g. `three-key`.
    public var name: String
    /// The device's keys.
    public var keys: [Key]

    /// Creates a scale; key codes must be distinct.
    public init(name: String, keys: [Key]) {
        self.name = name
        self.keys = keys
    }

    /// The mapping for a raw key code, or nil for a code the device should not send.
    public func key(forCode code: Int) -> Key? {
        keys.first { $0.code == code }
    }

    /// The three keys hall regulations name (满意 / 基本满意 / 不满意), mapped by their names.
    public static let threeKey = RatingScale(
        name: "three-key",
        keys: [
            Key(code: 1, label: "满意", level: .satisfied),
            Key(code: 2, label: "基本满意", level: .basicallySatisfied),
            Key(code: 3, label: "不满意", level: .dissatisfied),
        ]
    )

    /// Four keys: the three of the regulations plus 非常满意, again mapped by name.
    public static let fourKey = RatingScale(
        name: "four-key",
        keys: [
            Key(code: 1, label: "非常满意", level: .verySatisfied),
            Key(code: 2, label: "满意", level: .satisfied),
            Key(code: 3, label: "基本满意", level: .basicallySatisfied),
            Key(code: 4, label: "不满意", level: .dissatisfied),
        ]
    )

    /// The scales a profile may name; the profile maps its own key codes, the number of keys must match.
    public static let standard: [RatingScale] = [.threeKey, .fourKey, .fiveLevel]

    /// The national five levels themselves, one key each; the code is the level.
    public static let fiveLevel = RatingScale(
        name: "five-level",
        keys: NationalRatingLevel.allCases.reversed().map { Key(code: $0.rawValue, label: $0.label, level: $0) }
    )
}
