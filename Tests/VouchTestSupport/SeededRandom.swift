import Foundation

/// A small seeded generator (SplitMix64), so a random test run can be replayed from its seed.
public struct SplitMix64: RandomNumberGenerator {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The seed for one randomized test: `$VOUCH_TEST_SEED` when set (to replay a failure), else a
/// fresh one. Either way it is printed, and `context` carries it into failure messages.
public struct TestSeed: CustomStringConvertible {
    public let value: UInt64
    public let test: String

    public init(_ test: String = #function) {
        let env = ProcessInfo.processInfo.environment["VOUCH_TEST_SEED"].flatMap { UInt64($0) }
        value = env ?? UInt64.random(in: 1...UInt64.max)
        self.test = test
        print("\(test) seed \(value) (VOUCH_TEST_SEED=\(value) replays it)")
    }

    /// A generator seeded with this seed.
    public var generator: SplitMix64 { SplitMix64(seed: value) }

    /// For failure messages: the seed and how to replay it.
    public var description: String { "seed \(value) (VOUCH_TEST_SEED=\(value) replays it)" }
}
