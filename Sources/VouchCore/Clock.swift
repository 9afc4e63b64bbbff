import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Time source, injected everywhere a decision depends on the current time.
public protocol Clock: Sendable {
    func now() -> Date
}

public struct SystemClock: Clock {
    public init() {}
    public func now() -> Date { Date() }
}

extension Date {
    /// RFC 3339 / ISO 8601 in UTC with seconds ("2026-11-24T04:12:00Z"), as used on the wire and in
    /// status output. Formatted with gmtime_r: an ISO8601DateFormatter per call cost 7 % of the
    /// broker's CPU under a re-attesting fleet.
    public var iso8601: String {
        let u = utc
        guard (0...9999).contains(u.year) else {
            func p(_ v: Int, _ width: Int = 2) -> String { UTCFields.pad(v, width) }
            return "\(p(u.year, 4))-\(p(u.month))-\(p(u.day))T\(p(u.hour)):\(p(u.minute)):\(p(u.second))Z"
        }
        // Digits written into the string's storage (interpolating six padded strings was 1.5 %
        // of a warm TDX quote verification, whose claims carry two dates).
        return String(unsafeUninitializedCapacity: 20) { out in
            var i = 0
            func put(_ v: Int, _ width: Int) {
                var d = 1
                for _ in 1..<width { d *= 10 }
                while d > 0 { out[i] = UInt8(48 + v / d % 10); i += 1; d /= 10 }
            }
            func sep(_ c: UInt8) { out[i] = c; i += 1 }
            put(u.year, 4); sep(0x2d); put(u.month, 2); sep(0x2d); put(u.day, 2); sep(0x54)
            put(u.hour, 2); sep(0x3a); put(u.minute, 2); sep(0x3a); put(u.second, 2); sep(0x5a)
            return i
        }
    }

    /// The UTC calendar fields (gmtime_r), for the fixed formats Vouch writes.
    public var utc: UTCFields {
        var t = time_t(timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return UTCFields(year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday), hour: Int(parts.tm_hour),
                         minute: Int(parts.tm_min), second: Int(parts.tm_sec), weekday: Int(parts.tm_wday))
    }
}

/// A date's calendar fields in UTC: month 1-12, weekday 0 (Sunday) to 6.
public struct UTCFields: Sendable {
    public let year, month, day, hour, minute, second, weekday: Int

    /// `v` in decimal, zero-padded to `width` digits.
    public static func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

extension Date {
    /// An RFC 3339 date-time (section 5.6, as JSON Schema's `date-time` format reads it):
    /// `YYYY-MM-DDTHH:MM:SS`, optional fractional seconds of any length, then `Z` or `±HH:MM`;
    /// `T` and `Z` in either case; a leap second (`:60`) counts as the next second. Nil for
    /// anything else, including dates no calendar has (February 30).
    public static func parseRFC3339(_ text: String) -> Date? {
        let c = Array(text.utf8)
        func num(_ at: Int, _ n: Int) -> Int? {
            guard at + n <= c.count else { return nil }
            var v = 0
            for b in c[at..<at + n] { guard b >= 48 && b <= 57 else { return nil }; v = v * 10 + Int(b - 48) }
            return v
        }
        func isByte(_ at: Int, _ b: Character) -> Bool { at < c.count && c[at] == b.asciiValue! }
        guard c.count >= 20, let year = num(0, 4), isByte(4, "-"), let month = num(5, 2), isByte(7, "-"), let day = num(8, 2),
              isByte(10, "T") || isByte(10, "t"), let hour = num(11, 2), isByte(13, ":"), let minute = num(14, 2), isByte(16, ":"),
              let second = num(17, 2) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...12).contains(month), (1...monthDays[month - 1]).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var i = 19
        var fraction = 0.0
        if isByte(i, ".") {
            i += 1
            var scale = 0.1, digits = 0
            while i < c.count, c[i] >= 48 && c[i] <= 57 { fraction += Double(c[i] - 48) * scale; scale /= 10; i += 1; digits += 1 }
            guard digits > 0 else { return nil }
        }
        var offset = 0
        if isByte(i, "Z") || isByte(i, "z") {
            i += 1
        } else if isByte(i, "+") || isByte(i, "-"), let oh = num(i + 1, 2), isByte(i + 3, ":"), let om = num(i + 4, 2), oh < 24, om < 60 {
            offset = (oh * 60 + om) * 60 * (isByte(i, "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == c.count else { return nil }
        // Days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
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

/// Retry delay after `failures` consecutive failures: 1 s, doubling up to 512 s, never more than `cap`.
public func backoffDelay(failures: Int, cap: TimeInterval) -> TimeInterval {
    min(cap, pow(2, Double(min(max(failures, 1), 10) - 1)))
}
