import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where relying parties fetch revocation: the plain-HTTP publication listener
/// (`--publish-listen`, CRLs and OCSP only) and the URLs issued certificates carry — the CRL
/// distribution point (`<crlURL>/<issuing CA key id>`) and OCSP in Authority Information Access.
///
/// The listener is on by default, on the HTTPS listener's address and port + 1, and the URLs are
/// then http:// (RFC 5280 fetchers such as NSS speak http, and CRLs and OCSP answers are signed),
/// on the public URL's host: `https://broker.example:8443` publishes at
/// `http://broker.example:8444`. `--publish-listen off` turns it off, and the URLs are then the
/// HTTPS public URL's. `--crl-url` and `--ocsp-url` override either (https allowed).
struct Publication {
    var listen: (host: String, port: UInt16)?
    /// Base of the CRL URLs: certificates point at `<crlURL>/<issuing CA key id>`.
    var crlURL: String
    var ocspURL: String

    /// Reads publish-listen, publish-url, crl-url and ocsp-url; a bad value ends the process with
    /// a usage error naming where it came from.
    init(_ args: Settings, publicURL: String, httpsListen: String, httpsPort: UInt16) {
        var defaultURL: String?
        if args["publish-listen"] == nil {
            guard httpsPort < UInt16.max else {
                fail("\(args.source("port")): with port 65535 give publish-listen (ADDR:PORT, or off)")
            }
            listen = (httpsListen, httpsPort + 1)
            // The public URL's host (what relying parties already reach), on the publication port.
            if var c = URLComponents(string: publicURL), c.host != nil {
                c.scheme = "http"; c.port = Int(httpsPort) + 1; c.path = ""
                defaultURL = c.string
            }
        } else if args["publish-listen"] == "off" {
            listen = nil
        } else if let value = args["publish-listen"] {
            let field = args.source("publish-listen")
            guard let colon = value.lastIndex(of: ":"), let port = UInt16(value[value.index(after: colon)...]), port > 0 else {
                fail("\(field): publish-listen must be ADDR:PORT (an IPv4 address and a port 1-65535)")
            }
            let host = String(value[..<colon])
            var probe = in_addr()
            guard inet_pton(AF_INET, host, &probe) == 1 else { fail("\(field): publish-listen must be ADDR:PORT with an IPv4 address") }
            let anyHost = host == "0.0.0.0" || httpsListen == "0.0.0.0"
            guard port != httpsPort || (host != httpsListen && !anyHost) else {
                fail("\(field): publish-listen must not be the HTTPS listener's address and port")
            }
            listen = (host, port)
        }
        if args["publish-url"] != nil, listen == nil {
            fail("\(args.source("publish-url")): publish-url needs publish-listen (the listener it names)")
        }
        // A wildcard listen address names no host relying parties can reach: certificates then
        // carry the public URL's host on the publication port.
        if defaultURL == nil, let l = listen, l.host == "0.0.0.0", var c = URLComponents(string: publicURL), c.host != nil {
            c.scheme = "http"; c.port = Int(l.port); c.path = ""
            defaultURL = c.string
        }
        let base = Self.url(args, "publish-url") ?? defaultURL ?? listen.map { "http://\($0.host):\($0.port)" } ?? publicURL
        crlURL = Self.url(args, "crl-url") ?? base + "/v1/crl"
        ocspURL = Self.url(args, "ocsp-url") ?? base + "/v1/ocsp"
    }

    /// The setting `name` as an http(s) URL with a host and without query, fragment, user or a
    /// trailing slash.
    private static func url(_ args: Settings, _ name: String) -> String? {
        guard let value = args[name] else { return nil }
        let trimmed = value.hasSuffix("/") ? String(value.dropLast()) : value
        guard let c = URLComponents(string: trimmed), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = c.host, !host.isEmpty, c.query == nil, c.fragment == nil, c.user == nil, c.password == nil,
              trimmed.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            fail("\(args.source(name)): \(name) must be an http:// or https:// URL with a host and no query or fragment")
        }
        return trimmed
    }
}
