/// SPIFFE IDs as the SPIFFE ID specification writes them: `spiffe://`, a trust domain of lowercase
/// letters, digits, '.', '-' and '_', then a path of non-empty segments of letters, digits, '.',
/// '-' and '_' where no segment is "." or ".." (so a value such as a host name of ".." can never
/// move an ID up a level or name another identity); 2048 bytes at most.
public enum SPIFFEID {
    /// True for a SPIFFE ID (a trust domain alone, or one with a path).
    public static func isValid(_ id: String) -> Bool {
        trustDomainAndPath(id) != nil
    }

    /// The trust domain of a workload's SPIFFE ID (one with a path); nil for anything else.
    public static func workloadTrustDomain(_ id: String) -> String? {
        guard let (domain, path) = trustDomainAndPath(id), !path.isEmpty else { return nil }
        return domain
    }

    /// The trust domain and the path (empty, or starting with '/') of a valid SPIFFE ID.
    private static func trustDomainAndPath(_ id: String) -> (String, Substring)? {
        guard id.hasPrefix("spiffe://"), id.utf8.count <= 2048 else { return nil }
        let rest = id.dropFirst("spiffe://".count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let domain = parts.first, !domain.isEmpty,
              domain.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || ".-_".contains($0)) }) else { return nil }
        for segment in parts.dropFirst() {
            guard !segment.isEmpty, segment != ".", segment != "..",
                  segment.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-_".contains($0)) }) else { return nil }
        }
        return (String(domain), rest.dropFirst(domain.count))
    }
}
