import Foundation
import XCTest
import VouchCore
@testable import VouchCrypto
import VouchTestSupport

/// Extensions are DER values built in Swift. Each issued certificate is checked three ways:
/// against an explicit list of what `openssl x509 -text` must print (name, criticality, value);
/// against a reference certificate OpenSSL itself builds for the same key from the extension
/// config strings Vouch used before (so values, criticality and order agree, SKI and AKI
/// included); and with `openssl verify -purpose`.
final class CertificateExtensionTests: XCTestCase {
    let now = Date()
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-ext-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    // MARK: DER encoders

    func testDERPrimitives() {
        XCTAssertEqual(DER.objectIdentifier([2, 5, 29, 19]), [0x06, 0x03, 0x55, 0x1d, 0x13])
        XCTAssertEqual(DER.objectIdentifier([1, 3, 6, 1, 5, 5, 7, 48, 1]), [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01])
        XCTAssertEqual(DER.objectIdentifier([1, 2, 840, 113549]), [0x06, 0x06, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d])
        XCTAssertEqual(DER.objectIdentifier([2, 999, 3]), [0x06, 0x03, 0x88, 0x37, 0x03])
        // Named bits: trailing zero bits dropped, unused-bit count leads.
        XCTAssertEqual(DER.namedBits([]), [0x03, 0x01, 0x00])
        XCTAssertEqual(DER.namedBits([0]), [0x03, 0x02, 0x07, 0x80])
        XCTAssertEqual(DER.namedBits([0, 2]), [0x03, 0x02, 0x05, 0xa0])
        XCTAssertEqual(DER.namedBits([5, 6]), [0x03, 0x02, 0x01, 0x06])
        XCTAssertEqual(DER.namedBits([7]), [0x03, 0x02, 0x00, 0x01])
        XCTAssertEqual(DER.namedBits([8]), [0x03, 0x03, 0x07, 0x00, 0x80])
        XCTAssertEqual(KeyUsage([.digitalSignature, .decipherOnly]).der, [0x03, 0x03, 0x07, 0x80, 0x80])
        XCTAssertEqual(CertificateExtension.basicConstraints(isCA: false, critical: true).value, [0x30, 0x00])
        XCTAssertEqual(CertificateExtension.basicConstraints(isCA: true, pathLength: 1, critical: true).value,
                       [0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x01])
        XCTAssertEqual(OID(dotted: "1.3.6.1.4.1.99999.1")?.der, DER.objectIdentifier([1, 3, 6, 1, 4, 1, 99999, 1]))
        XCTAssertEqual(OID(dotted: "2.999.3")?.der, DER.objectIdentifier([2, 999, 3]))
        XCTAssertEqual(OID(dotted: "2.5.29.19"), OID.basicConstraints)
        for bad in ["1..2", "3.1", "1.40", "1", "subjectAltName", "1.2.-3", "1.2.3."] { XCTAssertNil(OID(dotted: bad), bad) }
    }

    /// Arcs beyond 64 bits (the attestation extension's 2.25 UUID OID) encode as OpenSSL encodes them.
    func testLargeArcsEncodeAsOpenSSLDoes() throws {
        for dotted in ["2.25.60286659441808924600910299526305292412", "2.25.340282366920938463463374607431768211455", "1.2.18446744073709551616",
                       "2.18446744073709551700.1", "0.0", "1.39.127.128.16383.16384"] {
            let out = try write("oid.der", "")
            let r = try openssl(["asn1parse", "-genstr", "OID:\(dotted)", "-out", out, "-noout"])
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(OID(dotted: dotted)?.der, Array(try Data(contentsOf: URL(fileURLWithPath: out))), dotted)
        }
    }

    // MARK: issued certificates

    func testCAAndIntermediateExtensions() throws {
        let rootKey = try PrivateKey.generate()
        let root = try CertificateAuthority.create(commonName: "Root", key: rootKey, notBefore: now, notAfter: now.addingTimeInterval(86400), pathLength: 1)
        let ski = try root.certificate.subjectKeyID
        XCTAssertEqual(try extensions(root.certificate), [
            Ext("X509v3 Basic Constraints", true, "CA:TRUE, pathlen:1"),
            Ext("X509v3 Key Usage", true, "Certificate Sign, CRL Sign"),
            Ext("X509v3 Subject Key Identifier", false, colonHex(ski)),
            Ext("X509v3 Authority Key Identifier", false, colonHex(ski)),
        ])
        XCTAssertEqual(root.certificate.extensionValue(oid: "2.5.29.15"), [0x03, 0x02, 0x01, 0x06])
        try assertSKIMatchesOpenSSL(root.certificate)

        let interKey = try PrivateKey.generate()
        let inter = try root.issueIntermediate(commonName: "Issuing", key: interKey, notBefore: now, notAfter: now.addingTimeInterval(86400))
        XCTAssertEqual(try extensions(inter.certificate), [
            Ext("X509v3 Basic Constraints", true, "CA:TRUE, pathlen:0"),
            Ext("X509v3 Key Usage", true, "Certificate Sign, CRL Sign"),
            Ext("X509v3 Subject Key Identifier", false, colonHex(try inter.certificate.subjectKeyID)),
            Ext("X509v3 Authority Key Identifier", false, colonHex(ski)),
        ])
        XCTAssertEqual(try inter.certificate.authorityKeyID, ski)
        try assertSKIMatchesOpenSSL(inter.certificate)
        try assertSameAsOpenSSLReference(inter.certificate, key: interKey, ca: root, extfile: """
            basicConstraints=critical,CA:TRUE,pathlen:0
            keyUsage=critical,keyCertSign,cRLSign
            subjectKeyIdentifier=hash
            authorityKeyIdentifier=keyid:always
            """)
        XCTAssertEqual(try openssl(["verify", "-CAfile", write("root.pem", root.certificate.pem), write("inter.pem", inter.certificate.pem)]).status, 0)
    }

    func testLeafExtensionsMatchTheOldProfiles() throws {
        let caKey = try PrivateKey.generate()
        let ca = try CertificateAuthority.create(commonName: "Vouch CA", key: caKey, notBefore: now, notAfter: now.addingTimeInterval(86400))
        let caSKI = colonHex(try ca.certificate.subjectKeyID)
        let crl = "https://broker.example:8443/v1/crl/abcd", ocsp = "https://broker.example:8443/v1/ocsp"
        struct Case { var usage: LeafProfile.Usage; var cn: String?; var uris: [String]; var dns: [String]; var ips: [String]
            var keyUsageText: String; var keyUsageDER: [UInt8]; var ekuText: String; var ekuConfig: String; var kuConfig: String
            var sanText: String; var sanConfig: String; var purposes: [String] }
        let cases = [
            Case(usage: .agent, cn: nil, uris: ["spiffe://td/host/0123/agent/a"], dns: [], ips: [],
                 keyUsageText: "Digital Signature", keyUsageDER: [0x03, 0x02, 0x07, 0x80],
                 ekuText: "TLS Web Server Authentication, TLS Web Client Authentication", ekuConfig: "serverAuth,clientAuth", kuConfig: "critical,digitalSignature",
                 sanText: "URI:spiffe://td/host/0123/agent/a", sanConfig: "URI:spiffe://td/host/0123/agent/a", purposes: ["sslclient", "sslserver"]),
            Case(usage: .host, cn: nil, uris: ["spiffe://td/host/0123"], dns: [], ips: [],
                 keyUsageText: "Digital Signature", keyUsageDER: [0x03, 0x02, 0x07, 0x80],
                 ekuText: "TLS Web Server Authentication, TLS Web Client Authentication", ekuConfig: "serverAuth,clientAuth", kuConfig: "critical,digitalSignature",
                 sanText: "URI:spiffe://td/host/0123", sanConfig: "URI:spiffe://td/host/0123", purposes: ["sslclient", "sslserver"]),
            Case(usage: .brokerClient, cn: "vouchd", uris: ["spiffe://td/vouchd"], dns: [], ips: [],
                 keyUsageText: "Digital Signature", keyUsageDER: [0x03, 0x02, 0x07, 0x80],
                 ekuText: "TLS Web Client Authentication", ekuConfig: "clientAuth", kuConfig: "critical,digitalSignature",
                 sanText: "URI:spiffe://td/vouchd", sanConfig: "URI:spiffe://td/vouchd", purposes: ["sslclient"]),
            Case(usage: .tlsServer, cn: "broker.example", uris: [], dns: ["broker.example", "localhost"], ips: ["127.0.0.1", "::1", "2001:db8::7"],
                 keyUsageText: "Digital Signature, Key Encipherment", keyUsageDER: [0x03, 0x02, 0x05, 0xa0],
                 ekuText: "TLS Web Server Authentication", ekuConfig: "serverAuth", kuConfig: "critical,digitalSignature,keyEncipherment",
                 sanText: "DNS:broker.example, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:0:0:0:7",
                 sanConfig: "DNS:broker.example,DNS:localhost,IP:127.0.0.1,IP:::1,IP:2001:db8::7", purposes: ["sslserver"]),
        ]
        for c in cases {
            let key = try PrivateKey.generate()
            let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(
                subjectCommonName: c.cn, uriSANs: c.uris, dnsSANs: c.dns, ipSANs: c.ips, notBefore: now.addingTimeInterval(-60),
                notAfter: now.addingTimeInterval(3600), usage: c.usage, crlDistributionPoint: crl, ocspURL: ocsp))
            XCTAssertEqual(try extensions(cert), [
                Ext("X509v3 Basic Constraints", true, "CA:FALSE"),
                Ext("X509v3 Subject Key Identifier", false, colonHex(try cert.subjectKeyID)),
                Ext("X509v3 Authority Key Identifier", false, caSKI),
                Ext("X509v3 Key Usage", true, c.keyUsageText),
                Ext("X509v3 Extended Key Usage", false, c.ekuText),
                Ext("X509v3 Subject Alternative Name", false, c.sanText),
                Ext("X509v3 CRL Distribution Points", false, "Full Name: URI:\(crl)"),
                Ext("Authority Information Access", false, "OCSP - URI:\(ocsp)"),
            ], "\(c.usage)")
            XCTAssertEqual(cert.extensionValue(oid: "2.5.29.15"), c.keyUsageDER)
            XCTAssertEqual(cert.extensionValue(oid: "2.5.29.19"), [0x30, 0x00])
            try assertSKIMatchesOpenSSL(cert)
            // The reference: OpenSSL builds the same extensions from the config strings Vouch used before.
            try assertSameAsOpenSSLReference(cert, key: key, ca: ca, extfile: """
                basicConstraints=critical,CA:FALSE
                subjectKeyIdentifier=hash
                authorityKeyIdentifier=keyid:always
                keyUsage=\(c.kuConfig)
                extendedKeyUsage=\(c.ekuConfig)
                subjectAltName=\(c.sanConfig)
                crlDistributionPoints=URI:\(crl)
                authorityInfoAccess=OCSP;URI:\(ocsp)
                """)
            let caFile = try write("ca.pem", ca.certificate.pem), certFile = try write("leaf.pem", cert.pem)
            for purpose in c.purposes {
                let v = try openssl(["verify", "-purpose", purpose, "-CAfile", caFile, certFile])
                XCTAssertEqual(v.status, 0, "\(c.usage) \(purpose): \(v.output)")
            }
        }
    }

    func testProfileExtensionsStayNonCriticalAndLast() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(86400))
        let der = DER.sequence([DER.integer(1), DER.utf8("x")])
        let cert = try ca.issue(publicKey: try PrivateKey.generate().publicKey, profile: LeafProfile(
            uriSANs: ["spiffe://td/host/1/agent/a"], notBefore: now, notAfter: now.addingTimeInterval(60), usage: .agent,
            extensions: [(oid: "1.3.6.1.4.1.99999.7", der: der), (oid: "2.25.60286659441808924600910299526305292412", der: der)]))
        XCTAssertEqual(cert.extensionValue(oid: "1.3.6.1.4.1.99999.7"), der)
        XCTAssertEqual(cert.extensionValue(oid: "2.25.60286659441808924600910299526305292412"), der)
        let exts = try extensions(cert)
        XCTAssertEqual(exts.suffix(2).map(\.name), ["1.3.6.1.4.1.99999.7", "2.25.60286659441808924600910299526305292412"])
        XCTAssertEqual(exts.suffix(2).map(\.critical), [false, false])
    }

    // MARK: refused names

    func testControlCharactersAndNonASCIIAreRefusedWithTheirReason() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(86400))
        let key = try PrivateKey.generate().publicKey
        func refusal(_ profile: LeafProfile) -> (VouchError?, CertificateNameError?) {
            do { _ = try ca.issue(publicKey: key, profile: profile); return (nil, nil) } catch {
                let e = error as? VouchError
                return (e, e?.cause as? CertificateNameError)
            }
        }
        func agent(_ uri: String, crl: String? = nil, ocsp: String? = nil) -> LeafProfile {
            LeafProfile(uriSANs: [uri], notBefore: now, notAfter: now.addingTimeInterval(60), usage: .agent, crlDistributionPoint: crl, ocspURL: ocsp)
        }
        func server(dns: [String] = [], ips: [String] = []) -> LeafProfile {
            LeafProfile(subjectCommonName: "s", dnsSANs: dns, ipSANs: ips, notBefore: now, notAfter: now.addingTimeInterval(60), usage: .tlsServer)
        }
        let cases: [(LeafProfile, String, CertificateNameError)] = [
            (agent("spiffe://td/a\nb"), "uriSAN", .controlCharacter),
            (agent("spiffe://td/a\u{0}b"), "uriSAN", .controlCharacter),
            (agent("spiffe://td/a\u{7f}"), "uriSAN", .controlCharacter),
            (agent("spiffe://td/é"), "uriSAN", .nonASCII),
            (agent("spiffe://td/a b"), "uriSAN", .whitespace),
            (agent("spiffe://td/a", crl: "http://x/\r\n"), "crlDistributionPoint", .controlCharacter),
            (agent("spiffe://td/a", crl: ""), "crlDistributionPoint", .empty),
            (agent("spiffe://td/a", ocsp: "http://x/\t"), "ocspURL", .controlCharacter),
            (server(dns: ["bad\u{1}.example"]), "dnsSAN", .controlCharacter),
            (server(ips: ["300.1.1.1"]), "ipSAN", .notAnIPAddress),
            (server(ips: ["1.2.3.4,DNS:evil"]), "ipSAN", .notAnIPAddress),
            (server(ips: ["fe80::1%eth0"]), "ipSAN", .notAnIPAddress),
        ]
        for (profile, field, reason) in cases {
            let (e, cause) = refusal(profile)
            XCTAssertEqual(e?.code, .invalidValue, "\(field) \(reason)")
            XCTAssertEqual(e?.context["field"], field)
            XCTAssertEqual(cause, reason, "\(field)")
        }
        // A comma is legal in a URI: accepted, and written as it is.
        let cert = try ca.issue(publicKey: key, profile: agent("spiffe://td/a,b", crl: "https://x/crl?a=1,2", ocsp: "https://x/o,1"))
        XCTAssertEqual(cert.uriSANs, ["spiffe://td/a,b"])
        let text = try extensions(cert)
        XCTAssertEqual(text.first { $0.name == "X509v3 CRL Distribution Points" }?.value, "Full Name: URI:https://x/crl?a=1,2")
        XCTAssertEqual(text.first { $0.name == "Authority Information Access" }?.value, "OCSP - URI:https://x/o,1")
    }

    func testCRLKeepsNumberAndAuthorityKeyIdentifier() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(86400))
        let der = try ca.makeCRL(entries: [RevokedEntry(serialHex: "4a01", revokedAt: now, reason: 1)], number: 300, thisUpdate: now,
                                 nextUpdate: now.addingTimeInterval(3600))
        let crl = try CRL(der: der)
        XCTAssertEqual(crl.number, 300)
        XCTAssertTrue(crl.isSigned(by: ca.certificate))
        let text = try openssl(["crl", "-inform", "DER", "-noout", "-text", "-in", write("crl.der", der)]).output
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(text.contains("X509v3 Authority Key Identifier: \(colonHex(try ca.certificate.subjectKeyID)) "), text)
        XCTAssertTrue(text.contains("X509v3 CRL Number: 300 "), text)
    }

    // MARK: helpers

    struct Ext: Equatable, CustomStringConvertible {
        var name: String, critical: Bool, value: String
        init(_ name: String, _ critical: Bool, _ value: String) { self.name = name; self.critical = critical; self.value = value }
        var description: String { "\(name)\(critical ? " (critical)" : ""): \(value)" }
    }

    /// The extensions as `openssl x509 -text` prints them, in order, each value's lines joined by a space.
    func extensions(_ cert: Certificate) throws -> [Ext] {
        let text = try openssl(["x509", "-noout", "-text", "-in", write("c-\(UUID().uuidString).pem", cert.pem)]).output
        guard let start = text.range(of: "X509v3 extensions:\n") else { return [] }
        var out: [Ext] = []
        for line in text[start.upperBound...].split(separator: "\n") {
            if line.hasPrefix("    Signature Algorithm") || line.hasPrefix("Signature") { break }
            let indent = line.prefix { $0 == " " }.count
            let body = line.trimmingCharacters(in: .whitespaces)
            if indent == 12, body.hasSuffix(":") || body.hasSuffix(": critical") {
                let critical = body.hasSuffix(": critical")
                out.append(Ext(String(body.dropLast(critical ? ": critical".count : 1)), critical, ""))
            } else if indent > 12, !out.isEmpty {
                out[out.count - 1].value += (out[out.count - 1].value.isEmpty ? "" : " ") + body
            } else { break }
        }
        return out
    }

    /// The SKI in the certificate is SHA-1 of the subjectPublicKey bits, as OpenSSL computes it
    /// for "hash": checked against `openssl x509 -ext` and an OpenSSL-side SHA-1 of the key bits.
    func assertSKIMatchesOpenSSL(_ cert: Certificate, file: StaticString = #filePath, line: UInt = #line) throws {
        let shown = try openssl(["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in", write("ski.pem", cert.pem)]).output
        XCTAssertTrue(shown.contains(colonHex(try cert.subjectKeyID)), shown, file: file, line: line)
        // The SPKI's BIT STRING (after its unused-bits byte), hashed by `openssl dgst -sha1`.
        let spki = try cert.publicKey.spkiDER
        var r = DER.Reader(spki)
        var seq = try r.sequence("spki")
        _ = try seq.element("alg")
        let bits = try seq.wholeByteBitString("key")
        let digest = try openssl(["dgst", "-sha1", "-r", write("bits.bin", bits)]).output
        XCTAssertEqual(String(digest.prefix(40)), try cert.subjectKeyID, file: file, line: line)
    }

    /// OpenSSL signs a certificate for the same key with `extfile` (the old config strings);
    /// the extension blocks of the two certificates must print the same.
    func assertSameAsOpenSSLReference(_ cert: Certificate, key: PrivateKey, ca: CertificateAuthority, extfile: String,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let csr = try CSR.create(key: key, commonName: "reference")
        let ref = try write("ref.pem", "")
        let r = try openssl(["x509", "-req", "-in", write("ref.csr", csr.pem), "-CA", write("refca.pem", ca.certificate.pem),
                             "-CAkey", write("refca.key", ca.key.pem), "-set_serial", "1", "-days", "1", "-extfile", write("ref.cnf", extfile + "\n"),
                             "-out", ref])
        XCTAssertEqual(r.status, 0, r.output, file: file, line: line)
        let reference = try Certificate(pem: String(contentsOfFile: ref, encoding: .utf8))
        XCTAssertEqual(try extensions(cert), try extensions(reference), file: file, line: line)
        for oid in ["2.5.29.19", "2.5.29.14", "2.5.29.35", "2.5.29.15", "2.5.29.37", "2.5.29.17", "2.5.29.31", "1.3.6.1.5.5.7.1.1"] {
            XCTAssertEqual(cert.extensionValue(oid: oid), reference.extensionValue(oid: oid), "DER of \(oid)", file: file, line: line)
        }
    }

    func colonHex(_ hex: String) -> String {
        stride(from: 0, to: hex.count, by: 2).map { i in
            let a = hex.index(hex.startIndex, offsetBy: i)
            return hex[a..<hex.index(a, offsetBy: 2)].uppercased()
        }.joined(separator: ":")
    }

    func write(_ name: String, _ text: String) throws -> String { try write(name, Array(text.utf8)) }
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func openssl(_ args: [String]) throws -> (status: Int32, output: String) { try runOpenSSL(args) }
}
