import Foundation
import Synchronization
import VouchEventLog

/// The JSON text the stores keep in columns (labels, claims, PCRs, event data, TEE evidence),
/// written one way by every store so that a database moved from one engine to another reads the
/// same, and each value a store reads back decodes as it was written.
public enum StoredJSON {
    /// Sorted keys (the same value, the same text).
    public static func encode<T: Encodable>(_ v: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? String(decoding: e.encode(v), as: UTF8.self)) ?? "null"
    }

    /// Event data: sorted keys, slashes as they are (`spiffe://…`, as the API writes them).
    public static func event(_ data: [String: String]) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: e.encode(data), as: UTF8.self)) ?? "null"
    }

    /// nil when the text is not a `T` (a column written by an older build reads as absent).
    public static func decode<T: Decodable>(_ s: String) -> T? { try? JSONDecoder().decode(T.self, from: Data(s.utf8)) }

    /// Claims as stored (`{}` if they could not be encoded).
    public static func claims(_ c: EvidenceClaims) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? String(decoding: e.encode(c), as: UTF8.self)) ?? "{}"
    }

    /// Decoded label sets by their stored JSON: hosts share a few, and a host record is read on
    /// every round (a JSONDecoder per read was 3 % of the broker's re-attestation time).
    private static let decodedLabels = Mutex<[String: [String: String]]>([:])

    public static func labels(_ json: String) -> [String: String]? {
        if let known = decodedLabels.withLock({ $0[json] }) { return known }
        guard let decoded: [String: String] = decode(json) else { return nil }
        decodedLabels.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[json] = decoded
        }
        return decoded
    }
}
