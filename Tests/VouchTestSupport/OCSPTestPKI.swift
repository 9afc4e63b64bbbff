import Foundation
import VouchCore
import VouchCrypto

/// A P-384 chain (root → intermediate → leaf, and a sibling leaf), OCSP responders and another CA,
/// with OCSP responses made by the OpenSSL command line (`openssl ocsp` as both requester and
/// responder, from an `index.txt`): answers from someone else's software for the revocation tests.
/// Certificates are valid from 30 days before `now` to a year after; `openssl ocsp` stamps
/// thisUpdate with the wall clock, so checks pick their time around `now`.
public final class OCSPTestPKI {
    public let dir: URL
    public let now: Date
    public let root: CertificateAuthority
    public let intermediate: CertificateAuthority
    public let leaf: Certificate
    public let sibling: Certificate
    /// Issued by the intermediate with id-kp-OCSPSigning.
    public let responder: (certificate: Certificate, key: PrivateKey)
    /// Issued by the intermediate, without extendedKeyUsage.
    public let responderWithoutEKU: (certificate: Certificate, key: PrivateKey)
    /// A CA outside the chain, and a responder it issued with id-kp-OCSPSigning.
    public let otherCA: CertificateAuthority
    public let otherResponder: (certificate: Certificate, key: PrivateKey)

    /// Who signs a response.
    public enum Signer { case issuer, root, delegated, delegatedWithoutEKU, otherCA, otherCAResponder }
    /// What the responder's index says about a serial (absent: `unknown`).
    public enum IndexStatus { case good, revoked(at: Date, reason: String?) }

    /// extendedKeyUsage = SEQUENCE { id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9) }.
    static let ocspSigningEKU: [UInt8] = [0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09]

    public init(now: Date = Date()) throws {
        self.now = now
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-ocsp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let from = now.addingTimeInterval(-30 * 86400), to = now.addingTimeInterval(365 * 86400)
        root = try CertificateAuthority.create(commonName: "OCSP Test Root", key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to, pathLength: 1)
        intermediate = try root.issueIntermediate(commonName: "OCSP Test Intermediate", key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to)
        func leafCert(_ ca: CertificateAuthority, _ name: String, eku: Bool) throws -> (certificate: Certificate, key: PrivateKey) {
            let key = try PrivateKey.generate(.p384)
            let cert = try ca.tdxSimulationLeaf(subject: [("O", "Vouch"), ("CN", name)], publicKey: key.publicKey, notBefore: from, notAfter: to,
                                                extensions: eku ? [(oid: "2.5.29.37", der: Self.ocspSigningEKU)] : [])
            return (cert, key)
        }
        leaf = try leafCert(intermediate, "OCSP Test Leaf", eku: false).certificate
        sibling = try leafCert(intermediate, "OCSP Test Sibling", eku: false).certificate
        responder = try leafCert(intermediate, "OCSP Test Responder", eku: true)
        responderWithoutEKU = try leafCert(intermediate, "OCSP Test Responder without EKU", eku: false)
        otherCA = try CertificateAuthority.create(commonName: "OCSP Other CA", key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to)
        otherResponder = try leafCert(otherCA, "OCSP Other Responder", eku: true)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    /// An `openssl ocsp` request for `certificate` (CertID with `hash`, no nonce) answered by an
    /// `openssl ocsp` responder whose index holds `index` for the certificates `issuer` issued.
    /// `days`: nextUpdate that many days after thisUpdate (nil: no nextUpdate).
    public func response(for certificate: Certificate, issuer: CertificateAuthority, signer: Signer = .issuer,
                         index: [(Certificate, IndexStatus)], days: Int? = 1, hash: String = "sha1", includeCerts: Bool = true) throws -> [UInt8] {
        let tag = UUID().uuidString
        let issuerPEM = try write("issuer-\(tag).pem", issuer.certificate.pem)
        let request = dir.appendingPathComponent("req-\(tag).der").path
        try run(["ocsp", "-\(hash)", "-issuer", issuerPEM, "-cert", try write("cert-\(tag).pem", certificate.pem), "-no_nonce", "-reqout", request])
        let (signerCert, signerKey): (Certificate, PrivateKey) = switch signer {
        case .issuer: (issuer.certificate, issuer.key)
        case .root: (root.certificate, root.key)
        case .delegated: responder
        case .delegatedWithoutEKU: responderWithoutEKU
        case .otherCA: (otherCA.certificate, otherCA.key)
        case .otherCAResponder: otherResponder
        }
        let lines = index.map { cert, status -> String in
            let serial = Self.opensslSerial(cert.serialHex)
            switch status {
            case .good: return "V\t\(Self.indexTime(cert.notAfter))\t\t\(serial)\tunknown\t/CN=\(serial)"
            case let .revoked(at, reason):
                return "R\t\(Self.indexTime(cert.notAfter))\t\(Self.indexTime(at))\(reason.map { ",\($0)" } ?? "")\t\(serial)\tunknown\t/CN=\(serial)"
            }
        }
        let indexFile = try write("index-\(tag).txt", lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n"))
        let out = dir.appendingPathComponent("resp-\(tag).der").path
        var args = ["ocsp", "-index", indexFile, "-CA", issuerPEM, "-rsigner", try write("rsigner-\(tag).pem", signerCert.pem),
                    "-rkey", try write("rkey-\(tag).pem", signerKey.pem), "-reqin", request, "-respout", out]
        if let days { args += ["-ndays", "\(days)"] }
        if !includeCerts { args.append("-resp_no_certs") }
        try run(args)
        return Array(try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    @discardableResult
    public func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// Runs /usr/bin/openssl; throws with its output unless it exits 0.
    public func run(_ args: [String]) throws {
        let r = try runOpenSSL(args)
        guard r.status == 0 else { throw TestFailure("openssl \(args.joined(separator: " ")) exited \(r.status): \(r.output)") }
    }

    /// The serial as OpenSSL's index lookup spells it (BN_bn2hex: upper case, whole bytes).
    static func opensslSerial(_ hex: String) -> String {
        let upper = hex.uppercased()
        return upper.count % 2 == 1 ? "0" + upper : upper
    }

    /// YYMMDDHHMMSSZ, as `index.txt` holds times.
    static func indexTime(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyMMddHHmmss'Z'"
        return f.string(from: d)
    }
}

/// Runs /usr/bin/openssl with `args`: its exit status and its stdout and stderr together.
public func runOpenSSL(_ args: [String]) throws -> (status: Int32, output: String) {
    try runProgram("/usr/bin/openssl", args)
}

/// Runs `executable` with `args`: its exit status and its stdout and stderr together.
public func runProgram(_ executable: String, _ args: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs /usr/bin/openssl with `args`, `stdin` on its standard input: its stdout's bytes (stderr
/// discarded). Throws when it exits non-zero.
public func opensslOutput(_ args: [String], stdin: [UInt8]? = nil) throws -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    let out = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardInput = input
    p.standardError = FileHandle.nullDevice
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin)) }
    try input.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw VouchError(.internalError, "openssl \(args.joined(separator: " ")) failed") }
    return [UInt8](data)
}
