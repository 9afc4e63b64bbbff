import Foundation
import VouchCore
import VouchTPMWire

/// A PKCS#10 certificate signing request (RFC 2986) as received: split into its parts by the
/// package's bounded DER reader, its self-signature not yet checked. Nothing in it is readable
/// until `verify()` returns a `VerifiedCertificateRequest` (verify before read).
///
/// Why not OpenSSL's d2i_X509_REQ: in OpenSSL 3 decoding a request decodes its public key
/// through the provider decoder machinery (OSSL_DECODER contexts, name lookups, locks), which
/// with the verification was about 10 % of the broker's CPU per enrollment. The common requests
/// (EC P-256/P-384 with ECDSA, RSA with PKCS #1 v1.5, SHA-256/384/512) are checked here: the
/// key is built from its parameters and the signature verified with EVP over the exact
/// CertificationRequestInfo bytes. Any other key or signature algorithm is handed to OpenSSL's
/// own parse and X509_REQ_verify, so what is accepted or refused there stays as it was.
public struct UnverifiedCertificateRequest: Sendable {
    /// The whole CertificationRequest, DER (read through `VerifiedCertificateRequest.der`).
    let der: [UInt8]
    /// CertificationRequestInfo, tag and length included: the bytes the signature covers.
    let info: [UInt8]
    /// The SubjectPublicKeyInfo inside `info`, tag and length included.
    let spki: [UInt8]
    /// The signature AlgorithmIdentifier's content (OID and parameters).
    let signatureAlgorithm: [UInt8]
    /// The signature BIT STRING's bytes (no unused bits).
    let signature: [UInt8]

    /// The largest request accepted (the limit CSR(pemOrDER:) has always had).
    public static let maxBytes = 65536

    /// Parses a PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST") or DER request.
    /// Throws `invalidValue` or `truncated` for anything that is not one well-formed request:
    /// bad PEM armour or base64, a DER structure that does not match, a version other than 1, or
    /// bytes after the request's outer SEQUENCE.
    public init(pemOrDER bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else {
            throw VouchError(.invalidValue, "CSR is larger than 64 KiB", context: ["field": "csr", "got": "\(bytes.count)"])
        }
        let der = bytes.starts(with: Array("-----BEGIN".utf8)) ? try Self.pemBody(bytes) : bytes
        var outer = DER.Reader(der)
        let request = try outer.read(DER.sequenceTag, "csr")
        guard outer.isAtEnd else {
            throw VouchError(.invalidValue, "CSR has bytes after its DER structure", context: ["field": "csr"])
        }
        var r = DER.Reader(request)
        let info = try r.element("csr.certificationRequestInfo")
        guard info.first == DER.sequenceTag else {
            throw VouchError(.invalidValue, "CSR's certificationRequestInfo is not a SEQUENCE", context: ["field": "csr"])
        }
        let algorithm = try r.read(DER.sequenceTag, "csr.signatureAlgorithm")
        let signature = try r.wholeByteBitString("csr.signature")
        guard r.isAtEnd else { throw VouchError(.invalidValue, "CSR has extra fields after its signature", context: ["field": "csr"]) }

        var infoTLV = DER.Reader(info)
        var i = try infoTLV.sequence("csr.certificationRequestInfo")
        guard try i.integer("csr.version") == 0 else {
            throw VouchError(.invalidValue, "CSR version is not 1 (0)", context: ["field": "csr.version"])
        }
        var subject = try i.sequence("csr.subject")
        while !subject.isAtEnd {   // RDNSequence: SET OF AttributeTypeAndValue
            var rdn = DER.Reader(try subject.read(0x31, "csr.subject.rdn"))
            repeat {
                var atv = try rdn.sequence("csr.subject.attribute")
                _ = try atv.read(DER.objectIdentifierTag, "csr.subject.attribute.type")
                _ = try atv.element("csr.subject.attribute.value")
                guard atv.isAtEnd else { throw VouchError(.invalidValue, "CSR subject attribute has extra fields", context: ["field": "csr.subject"]) }
            } while !rdn.isAtEnd
        }
        let spki = try i.element("csr.subjectPublicKeyInfo")
        var spkiTLV = DER.Reader(spki)
        var key = try spkiTLV.sequence("csr.subjectPublicKeyInfo")
        _ = try key.read(DER.sequenceTag, "csr.subjectPublicKeyInfo.algorithm")
        _ = try key.read(DER.bitStringTag, "csr.subjectPublicKeyInfo.subjectPublicKey")
        guard key.isAtEnd else { throw VouchError(.invalidValue, "CSR public key has extra fields", context: ["field": "csr.subjectPublicKeyInfo"]) }
        if !i.isAtEnd { _ = try i.read(DER.contextTag(0, constructed: true), "csr.attributes") }
        guard i.isAtEnd else { throw VouchError(.invalidValue, "CSR has extra fields after its attributes", context: ["field": "csr"]) }

        self.der = der
        self.info = info
        self.spki = spki
        self.signatureAlgorithm = algorithm
        self.signature = signature
    }

    /// Checks the self-signature with the request's own key (proof of possession). Returns nil
    /// when it does not verify; throws `invalidValue` when the request's key or signature
    /// algorithm cannot be read at all (a request OpenSSL also refuses to parse).
    public func verify() throws -> VerifiedCertificateRequest? {
        if let (scheme, hash) = Self.signatureScheme(signatureAlgorithm), let key = try? Self.knownKey(spki) {
            guard key.isEC == (scheme == .ecdsa) else { return nil }
            guard key.verify(message: info, signature: signature, scheme: scheme, hash: hash) else { return nil }
            return VerifiedCertificateRequest(der: der, publicKey: key)
        }
        // Another key or signature algorithm (Ed25519, RSA-PSS, SHA-1, an odd encoding): OpenSSL
        // parses and verifies it as it always has.
        let csr: CSR
        do { csr = try CSR(pemOrDER: der) } catch {
            throw VouchError(.invalidValue, "CSR is not a valid DER certificate request", context: ["field": "csr"])
        }
        guard csr.signatureIsValid else { return nil }
        return VerifiedCertificateRequest(der: der, publicKey: try csr.publicKey)
    }

    /// The DER inside the first CERTIFICATE REQUEST block (text after its END line is ignored,
    /// as OpenSSL's PEM reader ignores it). Encapsulated headers are refused.
    static func pemBody(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let der = PEMBlock.first(bytes, labels: ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]) else {
            throw VouchError(.invalidValue, "CSR is not a valid PEM certificate request", context: ["field": "csr"])
        }
        return der
    }

    static let ecdsaSHA256 = DER.objectIdentifier([1, 2, 840, 10045, 4, 3, 2])
    static let ecdsaSHA384 = DER.objectIdentifier([1, 2, 840, 10045, 4, 3, 3])
    static let ecdsaSHA512 = DER.objectIdentifier([1, 2, 840, 10045, 4, 3, 4])
    static let rsaSHA256 = DER.objectIdentifier([1, 2, 840, 113549, 1, 1, 11])
    static let rsaSHA384 = DER.objectIdentifier([1, 2, 840, 113549, 1, 1, 12])
    static let rsaSHA512 = DER.objectIdentifier([1, 2, 840, 113549, 1, 1, 13])
    static let null: [UInt8] = [0x05, 0x00]

    /// The scheme and hash of the algorithms checked here: ECDSA with no parameters, PKCS #1
    /// v1.5 with NULL parameters. Nil for anything else.
    static func signatureScheme(_ algorithm: [UInt8]) -> (SignatureScheme, HashAlg)? {
        let table: [([UInt8], SignatureScheme, HashAlg, [UInt8])] = [
            (ecdsaSHA256, .ecdsa, .sha256, []), (ecdsaSHA384, .ecdsa, .sha384, []), (ecdsaSHA512, .ecdsa, .sha512, []),
            (rsaSHA256, .rsassa, .sha256, null), (rsaSHA384, .rsassa, .sha384, null), (rsaSHA512, .rsassa, .sha512, null),
        ]
        for (oid, scheme, hash, parameters) in table where algorithm == oid + parameters { return (scheme, hash) }
        return nil
    }

    /// The key of a SubjectPublicKeyInfo in the one encoding `PublicKey.canonicalSPKIDER`
    /// writes (P-256/P-384 named curve with an uncompressed point; RSA with NULL parameters and
    /// minimal integers), built from its parameters; nil (or a throw, which `verify` reads as
    /// nil) for any other key or encoding, which then goes to OpenSSL.
    static func knownKey(_ spki: [UInt8]) throws -> PublicKey? {
        var outer = DER.Reader(spki)
        var body = try outer.sequence("subjectPublicKeyInfo")
        var algorithm = try body.sequence("subjectPublicKeyInfo.algorithm")
        let oid = try algorithm.read(DER.objectIdentifierTag, "subjectPublicKeyInfo.algorithm.oid")
        let bits = try body.read(DER.bitStringTag, "subjectPublicKeyInfo.subjectPublicKey")
        guard bits.first == 0 else { return nil }
        let key = Array(bits.dropFirst())
        let built: PublicKey?
        if DER.tlv(DER.objectIdentifierTag, oid) == PublicKey.ecPublicKeyOID {
            let curveOID = try algorithm.element("subjectPublicKeyInfo.algorithm.curve")
            guard let curve = PublicKey.namedCurves.first(where: { $0.oid == curveOID && $0.curve != .nistP521 })?.curve,
                  key.count == 1 + 2 * curve.coordinateSize, key[0] == 0x04 else { return nil }
            let n = curve.coordinateSize
            built = try? PublicKey(ecPoint: .ecc(curve: curve, x: Array(key[1...n]), y: Array(key[(n + 1)...])))
        } else if DER.tlv(DER.objectIdentifierTag, oid) == PublicKey.rsaEncryptionOID {
            guard try algorithm.element("subjectPublicKeyInfo.algorithm.parameters") == null else { return nil }
            var rsa = DER.Reader(key)
            var fields = try rsa.sequence("RSAPublicKey")
            let modulus = try fields.read(DER.integerTag, "RSAPublicKey.modulus")
            let exponent = try fields.read(DER.integerTag, "RSAPublicKey.publicExponent")
            guard fields.isAtEnd, rsa.isAtEnd else { return nil }
            built = try? PublicKey(rsaModulus: modulus, exponent: exponent)
        } else {
            return nil
        }
        guard algorithm.isAtEnd, body.isAtEnd, outer.isAtEnd else { return nil }
        // Only the canonical encoding: then the key's SPKI is byte for byte what the request
        // carried (the bytes the quote's binding hashes), and any other form goes to OpenSSL.
        guard let built, built.spkiIsCanonical, (try? built.spkiDER) == spki else { return nil }
        return built
    }
}

/// A certificate request whose self-signature verified with its own key: proof that the sender
/// holds the private key of `publicKey`.
public struct VerifiedCertificateRequest: Sendable {
    /// The request as received, DER (what a renewal proof signs).
    public let der: [UInt8]
    public let publicKey: PublicKey
}

/// Reads PEM on its bytes (a String walked a Character at a time, for a few KiB of base64, showed
/// in the enrollment profile).
enum PEMBlock {
    /// The DER of the first block whose BEGIN line names one of `labels`, up to its END line; nil
    /// when there is none, the END line is missing, a line in between is a header ("Name:
    /// value") or another armour line, or the base64 does not decode to at least one byte.
    /// Lines end with LF or CRLF; spaces and tabs after a line are ignored, and around a base64
    /// line; armour lines start at the line's first byte, as OpenSSL's PEM reader wants them (an
    /// indented BEGIN line is no block start, so both read the same block).
    static func first(_ bytes: [UInt8], labels: [String]) -> [UInt8]? {
        let lines = bytes.split(separator: 0x0a, omittingEmptySubsequences: false).map { trimmed($0, leading: false) }
        let begins = labels.map { Array("-----BEGIN \($0)-----".utf8) }
        guard let at = lines.firstIndex(where: { line in begins.contains { line.elementsEqual($0) } }) else { return nil }
        let end = Array("-----END ".utf8) + lines[at].dropFirst("-----BEGIN ".utf8.count)
        var body: [UInt8] = []
        for untrimmed in lines[(at + 1)...] {
            let line = trimmed(untrimmed, leading: true)
            if untrimmed.elementsEqual(end) {
                guard let data = Data(base64Encoded: Data(body)), !data.isEmpty else { return nil }
                return [UInt8](data)
            }
            guard !line.contains(UInt8(ascii: ":")), !line.starts(with: "-----".utf8) else { return nil }
            body += line
        }
        return nil
    }

    private static func trimmed(_ line: ArraySlice<UInt8>, leading: Bool) -> ArraySlice<UInt8> {
        func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0d }
        var l = line
        while leading, let b = l.first, blank(b) { l = l.dropFirst() }
        while let b = l.last, blank(b) { l = l.dropLast() }
        return l
    }
}
