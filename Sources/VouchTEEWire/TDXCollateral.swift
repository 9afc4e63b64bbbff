import Foundation
import VouchCore

/// A JSON object Intel signed, kept as the exact bytes PCS sent: the TCB info and QE identity
/// signatures (ECDSA P-256/SHA-256, raw r‖s) are over this text, so it is never re-serialised.
/// UNVERIFIED until `TDXVerifier` has checked the signature.
public struct TDXSignedJSON: Sendable, Equatable {
    /// The object's text, byte for byte.
    public let bytes: [UInt8]
    /// r‖s, 64 bytes.
    public let signature: [UInt8]

    public init(bytes: [UInt8], signature: [UInt8]) throws {
        guard bytes.count <= TDXCollateral.maxFieldBytes else {
            throw tdxMalformed("signed collateral object is larger than allowed", field: "collateral", expected: "<= \(TDXCollateral.maxFieldBytes)", got: "\(bytes.count)")
        }
        guard signature.count == 64 else {
            throw tdxMalformed("collateral signature is not 64 bytes (r‖s)", field: "collateral.signature", expected: "64", got: "\(signature.count)")
        }
        self.bytes = bytes
        self.signature = signature
    }

    /// Reads a PCS response body `{"<key>":{…},"signature":"<hex>"}`: the object's exact text is
    /// found by a bounded scan of the top level (strings and nesting tracked, depth limited),
    /// the signature is the hex string. Any other top-level member, or one given twice, is refused.
    public init(pcsBody: [UInt8], key: String) throws {
        guard pcsBody.count <= TDXCollateral.maxFieldBytes else {
            throw tdxMalformed("PCS response body is larger than allowed", field: key, expected: "<= \(TDXCollateral.maxFieldBytes)", got: "\(pcsBody.count)")
        }
        // The whole body must be valid JSON before its text is scanned.
        guard (try? JSONSerialization.jsonObject(with: Data(pcsBody))) is [String: Any] else {
            throw tdxMalformed("PCS response body is not a JSON object", field: key)
        }
        let members = try TDXJSONScan.topLevelMembers(pcsBody, field: key)
        guard Set(members.map(\.key)) == [key, "signature"], members.count == 2 else {
            throw tdxMalformed("PCS response body must have exactly the members \(key) and signature", field: key,
                               got: members.map(\.key).joined(separator: ","))
        }
        let object = members.first { $0.key == key }!.range
        let sig = members.first { $0.key == "signature" }!.range
        guard pcsBody[object.lowerBound] == UInt8(ascii: "{") else { throw tdxMalformed("\(key) is not a JSON object", field: key) }
        guard let s = try? JSONSerialization.jsonObject(with: Data(pcsBody[sig]), options: .fragmentsAllowed) as? String,
              let signature = try? Hex.decode(s) else {
            throw tdxMalformed("signature is not a hex string", field: "\(key).signature")
        }
        try self.init(bytes: Array(pcsBody[object]), signature: signature)
    }

    /// The PCS response body for this object: `{"<key>":<bytes>,"signature":"<hex>"}`.
    public func pcsBody(key: String) -> [UInt8] {
        Array("{\"\(key)\":".utf8) + bytes + Array(",\"signature\":\"\(Hex.encode(signature))\"}".utf8)
    }
}

/// Everything besides the quote that a TDX verdict needs, as Intel PCS (or a PCCS) serves it:
/// the TDX TCB info and the TD QE identity (each the exact signed JSON with its signature and the
/// PEM issuer chain of the TCB signing certificate), the PCK CRL (DER) with its issuer chain, and
/// the Intel SGX Root CA CRL (DER). UNVERIFIED: `TDXVerifier` checks every signature and window.
public struct TDXCollateral: Sendable, Equatable {
    /// Any one field (a CRL, a chain, a JSON object) larger than this is refused unread.
    public static let maxFieldBytes = 1 << 20
    /// A whole collateral document larger than this is refused unread.
    public static let maxDocumentBytes = 8 << 20

    public var tcbInfo: TDXSignedJSON
    public var tcbInfoIssuerChain: String
    public var qeIdentity: TDXSignedJSON
    public var qeIdentityIssuerChain: String
    public var pckCRL: [UInt8]
    /// The PCK CRL's issuer chain as PCS sends it (informational: the CRL is checked against the
    /// CA that issued the quote's PCK certificate).
    public var pckCRLIssuerChain: String
    public var rootCACRL: [UInt8]

    public init(tcbInfo: TDXSignedJSON, tcbInfoIssuerChain: String, qeIdentity: TDXSignedJSON, qeIdentityIssuerChain: String,
                pckCRL: [UInt8], pckCRLIssuerChain: String = "", rootCACRL: [UInt8]) {
        self.tcbInfo = tcbInfo
        self.tcbInfoIssuerChain = tcbInfoIssuerChain
        self.qeIdentity = qeIdentity
        self.qeIdentityIssuerChain = qeIdentityIssuerChain
        self.pckCRL = pckCRL
        self.pckCRLIssuerChain = pckCRLIssuerChain
        self.rootCACRL = rootCACRL
    }

    /// dcap-qvl's `QuoteCollateralV3` JSON: `tcb_info` and `qe_identity` are the exact signed
    /// JSON texts (as JSON strings), `*_signature` hex r‖s, `*_issuer_chain` PEM, `pck_crl` and
    /// `root_ca_crl` hex DER.
    public init(dcapQVLJSON bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxDocumentBytes else {
            throw tdxMalformed("collateral document is larger than allowed", field: "collateral", expected: "<= \(Self.maxDocumentBytes)", got: "\(bytes.count)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw tdxMalformed("collateral is not a JSON object", field: "collateral")
        }
        func string(_ key: String) throws -> String {
            guard let s = object[key] as? String else { throw tdxMalformed("collateral lacks the string \(key)", field: "collateral.\(key)") }
            guard s.utf8.count <= Self.maxFieldBytes else { throw tdxMalformed("collateral field is larger than allowed", field: "collateral.\(key)") }
            return s
        }
        func hex(_ key: String) throws -> [UInt8] {
            do { return try Hex.decode(string(key), field: "collateral.\(key)") } catch let e as VouchError where e.code != .teeEvidenceMalformed {
                throw tdxMalformed("collateral field is not hex", field: "collateral.\(key)")
            }
        }
        self.init(tcbInfo: try TDXSignedJSON(bytes: Array(try string("tcb_info").utf8), signature: try hex("tcb_info_signature")),
                  tcbInfoIssuerChain: try string("tcb_info_issuer_chain"),
                  qeIdentity: try TDXSignedJSON(bytes: Array(try string("qe_identity").utf8), signature: try hex("qe_identity_signature")),
                  qeIdentityIssuerChain: try string("qe_identity_issuer_chain"),
                  pckCRL: try Self.crlBytes(try hex("pck_crl"), field: "collateral.pck_crl"),
                  pckCRLIssuerChain: (object["pck_crl_issuer_chain"] as? String) ?? "",
                  rootCACRL: try Self.crlBytes(try hex("root_ca_crl"), field: "collateral.root_ca_crl"))
    }

    /// The files a PCS client saves (the layout of go-tdx-guest's test data): `read(name)`
    /// returns a file's bytes or nil when absent. Names: tcbinfo_response.json,
    /// qeidentity_response.json (PCS bodies), tcb_info_issuer_chain.pem,
    /// qe_identity_issuer_chain.pem, pck_crl_issuer_chain.pem (PEM, as the `*-Issuer-Chain` headers
    /// carry them URL-decoded), pck_crl_platform.der or pck_crl_processor.der or pck_crl.der, and
    /// root_ca_crl.der (each CRL DER, hex DER or PEM).
    public static func pcsFiles(_ read: (String) throws -> [UInt8]?) throws -> TDXCollateral {
        func required(_ names: [String]) throws -> [UInt8] {
            for n in names {
                if let b = try read(n) {
                    guard b.count <= maxFieldBytes else { throw tdxMalformed("collateral file is larger than allowed", field: n) }
                    return b
                }
            }
            throw tdxMalformed("collateral file is missing", field: names.joined(separator: "|"))
        }
        func text(_ name: String) throws -> String { String(decoding: try required([name]), as: UTF8.self) }
        return TDXCollateral(tcbInfo: try TDXSignedJSON(pcsBody: try required(["tcbinfo_response.json"]), key: "tcbInfo"),
                             tcbInfoIssuerChain: try text("tcb_info_issuer_chain.pem"),
                             qeIdentity: try TDXSignedJSON(pcsBody: try required(["qeidentity_response.json"]), key: "enclaveIdentity"),
                             qeIdentityIssuerChain: try text("qe_identity_issuer_chain.pem"),
                             pckCRL: try crlBytes(try required(["pck_crl_platform.der", "pck_crl_processor.der", "pck_crl.der"]), field: "pck_crl"),
                             pckCRLIssuerChain: (try read("pck_crl_issuer_chain.pem")).map { String(decoding: $0, as: UTF8.self) } ?? "",
                             rootCACRL: try crlBytes(try required(["root_ca_crl.der"]), field: "root_ca_crl"))
    }

    /// A CRL as DER, from DER (starts with a SEQUENCE), hex DER (PCS's v3 form) or PEM.
    public static func crlBytes(_ bytes: [UInt8], field: String) throws -> [UInt8] {
        if bytes.first == 0x30 { return bytes }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("-----BEGIN X509 CRL-----") {
            let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            guard let der = Data(base64Encoded: body.trimmingCharacters(in: .whitespacesAndNewlines)), der.first == 0x30 else {
                throw tdxMalformed("CRL PEM does not decode", field: field)
            }
            return [UInt8](der)
        }
        guard let der = try? Hex.decode(text), der.first == 0x30 else { throw tdxMalformed("CRL is neither DER, hex DER nor PEM", field: field) }
        return der
    }

    /// This collateral as dcap-qvl `QuoteCollateralV3` JSON (keys sorted).
    public var dcapQVLJSON: [UInt8] {
        let object: [String: String] = [
            "pck_crl_issuer_chain": pckCRLIssuerChain, "root_ca_crl": Hex.encode(rootCACRL), "pck_crl": Hex.encode(pckCRL),
            "tcb_info_issuer_chain": tcbInfoIssuerChain, "tcb_info": String(decoding: tcbInfo.bytes, as: UTF8.self),
            "tcb_info_signature": Hex.encode(tcbInfo.signature), "qe_identity_issuer_chain": qeIdentityIssuerChain,
            "qe_identity": String(decoding: qeIdentity.bytes, as: UTF8.self), "qe_identity_signature": Hex.encode(qeIdentity.signature),
        ]
        return [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }
}

/// A bounded scan of a JSON document's top-level object: each member's key and the byte range
/// of its value, without interpreting the value. Strings (with escapes) and nesting are tracked
/// so a brace inside a string is not structure; nesting deeper than `maxDepth` is refused.
enum TDXJSONScan {
    static let maxDepth = 64

    static func topLevelMembers(_ b: [UInt8], field: String) throws -> [(key: String, range: Range<Int>)] {
        var i = 0
        func ws() { while i < b.count, [0x20, 0x09, 0x0a, 0x0d].contains(b[i]) { i += 1 } }
        func fail(_ message: String) -> VouchError { tdxMalformed(message, field: field, offset: i) }
        func expect(_ c: UInt8) throws {
            guard i < b.count, b[i] == c else { throw fail("JSON expected '\(Character(UnicodeScalar(c)))'") }
            i += 1
        }
        /// Skips a string starting at `i` (on its opening quote); returns its raw content range.
        func string() throws -> Range<Int> {
            try expect(UInt8(ascii: "\""))
            let start = i
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "\""): defer { i += 1 }; return start..<i
                default: i += 1
                }
            }
            throw fail("JSON string is not closed")
        }
        /// Skips one value (object, array, string or scalar) starting at `i`; returns its range.
        func value() throws -> Range<Int> {
            let start = i
            var depth = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    _ = try string()
                    if depth == 0 { return start..<i }
                } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                    depth += 1
                    guard depth <= maxDepth else { throw fail("JSON nests deeper than \(maxDepth)") }
                    i += 1
                } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    if depth == 0 { return start..<i }   // a scalar ended at its object's close
                    depth -= 1
                    i += 1
                    if depth == 0 { return start..<i }
                } else if depth == 0, c == UInt8(ascii: ",") || [0x20, 0x09, 0x0a, 0x0d].contains(c) {
                    return start..<i
                } else {
                    i += 1
                }
            }
            guard depth == 0 else { throw fail("JSON value is not closed") }
            return start..<i
        }
        var members: [(key: String, range: Range<Int>)] = []
        ws()
        try expect(UInt8(ascii: "{"))
        ws()
        if i < b.count, b[i] == UInt8(ascii: "}") { i += 1 } else {
            while true {
                ws()
                let key = String(decoding: b[try string()], as: UTF8.self)
                ws()
                try expect(UInt8(ascii: ":"))
                ws()
                let range = try value()
                guard !range.isEmpty else { throw fail("JSON member has no value") }
                guard !members.contains(where: { $0.key == key }) else { throw fail("JSON member \(key) is given twice") }
                members.append((key, range))
                ws()
                if i < b.count, b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"))
                break
            }
        }
        ws()
        guard i == b.count else { throw fail("JSON has bytes after its top-level object") }
        return members
    }
}
