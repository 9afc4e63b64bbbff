internal import CCurl
import VouchCore

extension HTTPClient {
    /// Why `path` cannot be appended to a base URL, or nil when it can: it must be origin-form
    /// (RFC 9112 section 3.2.1) — `/`, then printable ASCII without a space, backslash or `#` —
    /// and (unless `allowingDoubleSlash`) not start with `//`. Anything else could make the
    /// joined URL name another host or port (`@169.254.169.254/x`, `:6379/x`, `.evil.example/x`,
    /// `//evil/x`, `http://evil/x`).
    public static func originFormProblem(_ path: String, allowingDoubleSlash: Bool = false) -> String? {
        guard path.utf8.first == UInt8(ascii: "/") else { return "it does not start with /" }
        guard allowingDoubleSlash || !path.hasPrefix("//") else { return "it starts with //" }
        for b in path.utf8 where b <= 0x20 || b >= 0x7f || b == UInt8(ascii: "\\") || b == UInt8(ascii: "#") {
            return "it has a space, control character, backslash, # or non-ASCII byte (0x\(String(b, radix: 16)))"
        }
        return nil
    }

    /// Why a header cannot be sent, or nil: its name must be a token, its value free of control
    /// characters other than HTAB (a CR or LF would start another header).
    public static func headerProblem(_ name: String, _ value: String) -> String? {
        let separators = Set("()<>@,;:\\\"/[]?={} \t".utf8)
        guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && !separators.contains($0) }) else { return "header name is not a token" }
        guard value.utf8.allSatisfy({ ($0 >= 0x20 && $0 != 0x7f) || $0 == 0x09 }) else { return "header value has a control character" }
        return nil
    }

    /// The scheme, host and port `url` reaches, as curl parses it (the default port made
    /// explicit); nil when curl cannot parse it or it carries user info.
    static func origin(of url: String) -> String? {
        guard let u = curl_url() else { return nil }
        defer { curl_url_cleanup(u) }
        guard curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var out: UnsafeMutablePointer<CChar>?
            guard curl_url_get(u, which, &out, flags) == CURLUE_OK, let out else { return nil }
            defer { curl_free(out) }
            return String(cString: out)
        }
        guard part(CURLUPART_USER) == nil, part(CURLUPART_PASSWORD) == nil, part(CURLUPART_OPTIONS) == nil,
              let scheme = part(CURLUPART_SCHEME), let host = part(CURLUPART_HOST), let port = part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT)) else { return nil }
        return "\(scheme.lowercased())://\(host.lowercased()):\(port)"
    }

    /// `base + path`, refused (`http` error, cause `invalidRequest`) unless `path` is origin-form
    /// and the joined URL reaches exactly the base's scheme, host and port. A path starting with
    /// `//` is let through (empty segments are a server's business) only because of that check.
    static func join(base: String, path: String) throws -> String {
        if let problem = originFormProblem(path, allowingDoubleSlash: true) {
            throw VouchError(.http, "request path refused: \(problem)", context: ["path": String(path.prefix(200))], cause: HTTPClientError.invalidRequest)
        }
        let url = base + path
        guard let origin = origin(of: url), origin == Self.origin(of: base) else {
            throw VouchError(.http, "request path refused: the URL would not reach \(base)", context: ["path": String(path.prefix(200))],
                             cause: HTTPClientError.invalidRequest)
        }
        return url
    }
}
