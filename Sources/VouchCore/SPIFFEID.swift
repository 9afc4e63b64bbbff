/// SPIFFE IDs as the SPIFFE ID specification (SPIFFE-ID.md, section 2) writes them: `spiffe://`,
/// a trust domain of lowercase letters, digits, '.', '-' and '_', then a path of non-empty
/// segments of letters, digits, '.', '-' and '_' where no segment is "." or ".." (so a value such
/// as a host name of ".." can never move an ID up a level or name another identity); 2048 bytes
/// at most.
public enum SPIFFEID {
    /// The longest SPIFFE ID, in bytes.
    public static let maxLength = 2048

    /// Splits a SPIFFE ID into its trust domain and its path ("" or "/a/b"). Checks, in order:
    ///   1. at most 2,048 bytes;
    ///   2. the scheme is `spiffe://` (lowercase);
    ///   3. the trust domain is not empty and has only lowercase letters, digits, '.', '-' and
    ///      '_' (so no userinfo '@', port ':', query '?' or fragment '#');
    ///   4. the path, if any, is segments after '/', each non-empty, not "." or "..", of letters,
    ///      digits, '.', '-' and '_' (no trailing '/', no query or fragment).
    /// Failures are `invalid_value` with field `spiffe_id` and the check's name as `reason`.
    public static func parse(_ s: String) throws -> (trustDomain: String, path: String) {
        func refuse(_ reason: String, _ message: String) -> VouchError {
            VouchError(.invalidValue, "not a SPIFFE ID: \(message)", context: ["field": "spiffe_id", "reason": reason])
        }
        let bytes = Array(s.utf8)
        guard bytes.count <= maxLength else { throw refuse("length", "longer than \(maxLength) bytes") }
        let scheme = Array("spiffe://".utf8)
        guard bytes.starts(with: scheme) else { throw refuse("scheme", "the scheme is not spiffe://") }
        let rest = bytes[scheme.count...]
        let domain = rest.prefix { $0 != UInt8(ascii: "/") }
        guard !domain.isEmpty else { throw refuse("trust_domain", "the trust domain is empty") }
        guard domain.allSatisfy(isTrustDomainByte) else {
            throw refuse("trust_domain", "the trust domain has a character other than a-z 0-9 . - _")
        }
        let path = rest[domain.endIndex...]
        // The path is empty or starts with '/': the first piece of the split is always empty.
        for segment in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            guard !segment.isEmpty else { throw refuse("path", "the path has an empty segment") }
            guard !segment.elementsEqual([0x2e]), !segment.elementsEqual([0x2e, 0x2e]) else {
                throw refuse("path", "the path has a '.' or '..' segment")
            }
            guard segment.allSatisfy(isPathByte) else { throw refuse("path", "the path has a character other than a-z A-Z 0-9 . - _") }
        }
        return (String(decoding: domain, as: UTF8.self), String(decoding: path, as: UTF8.self))
    }

    /// True for a SPIFFE ID (a trust domain alone, or one with a path).
    public static func isValid(_ id: String) -> Bool {
        (try? parse(id)) != nil
    }

    /// The trust domain of a workload's SPIFFE ID (one with a path); nil for anything else.
    public static func workloadTrustDomain(_ id: String) -> String? {
        guard let (domain, path) = try? parse(id), !path.isEmpty else { return nil }
        return domain
    }

    static func isTrustDomainByte(_ b: UInt8) -> Bool {
        (0x61...0x7a).contains(b) || (0x30...0x39).contains(b) || b == 0x2e || b == 0x2d || b == 0x5f
    }

    static func isPathByte(_ b: UInt8) -> Bool {
        isTrustDomainByte(b) || (0x41...0x5a).contains(b)
    }
}
