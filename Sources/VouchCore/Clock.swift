import Foundation

/// Time source, injected everywhere a decision depends on the current time.
public protocol Clock: Sendable {
    func now() -> Date
}

public struct SystemClock: Clock {
    public init() {}
    public func now() -> Date { Date() }
}

extension Date {
    /// RFC 3339 / ISO 8601 in UTC with seconds, as used on the wire and in status output.
    public var iso8601: String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: self)
    }

    public static func parseISO8601(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}

/// Parses durations such as `90s`, `15m`, `2h`, `1d` (one unit). Returns seconds.
public func parseDuration(_ text: String, field: String) throws -> TimeInterval {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    guard let unit = text.last, let mult = units[unit], let n = Double(text.dropLast()), n > 0, n.isFinite else {
        throw VouchError(.invalidValue, "\(field) must be a positive duration such as 90s, 15m, 2h or 1d",
                         context: ["field": field, "got": text])
    }
    return n * mult
}
