import VouchCore

/// A COSE_Sign1 message (RFC 9052 4.2), tagged 18 or untagged, as AWS Nitro Enclaves sign their
/// attestation documents: the protected header must be exactly `{1: -35}` (ES384) and the
/// signature 96 bytes (r ‖ s, big-endian). Parsed, not verified.
public struct COSESign1: Sendable {
    /// The protected header's bytes, exactly as signed.
    public let protected: [UInt8]
    public let payload: [UInt8]
    /// ECDSA P-384 r ‖ s.
    public let signature: [UInt8]
    public let tagged: Bool

    /// At most 64 KiB (a Nitro document is about 5 KiB).
    public static let maxSize = 65536
    /// COSE algorithm ES384 (ECDSA with SHA-384).
    public static let es384 = -35

    public init(bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxSize else {
            throw VouchError(.teeEvidenceMalformed, "a COSE_Sign1 message is larger than 64 KiB", context: ["field": "cose", "expected": "<= 65536", "got": "\(bytes.count)"])
        }
        var item = try CBORReader.decode(bytes, field: "cose")
        tagged = { if case .tagged = item { return true } else { return false } }()
        if case let .tagged(tag, inner) = item {
            guard tag == 18 else { throw malformed("cose", "a COSE_Sign1 tag is 18", got: "tag \(tag)") }
            item = inner
        }
        guard case let .array(parts) = item, parts.count == 4 else { throw malformed("cose", "COSE_Sign1 is an array of 4", got: "\(item.kind)") }
        guard case let .bytes(protected) = parts[0] else { throw malformed("cose.protected", "a byte string", got: parts[0].kind) }
        let header = try CBORReader.decode(protected, field: "cose.protected", maxDepth: 2)
        guard header == .map([CBORPair(key: .unsigned(1), value: .negative(34))]) else {
            throw malformed("cose.protected", "exactly {1: -35} (ES384)", got: "\(header)")
        }
        guard case .map = parts[1] else { throw malformed("cose.unprotected", "a map", got: parts[1].kind) }
        guard case let .bytes(payload) = parts[2] else { throw malformed("cose.payload", "a byte string (not detached)", got: parts[2].kind) }
        guard case let .bytes(signature) = parts[3], signature.count == 96 else { throw malformed("cose.signature", "96 bytes (ES384 r||s)", got: parts[3].kind) }
        (self.protected, self.payload, self.signature) = (protected, payload, signature)
    }

    /// The bytes the signature covers: Sig_structure = ["Signature1", protected, external_aad
    /// = h'', payload] (RFC 9052 4.4).
    public var toBeSigned: [UInt8] {
        CBOREncoder.head(4, 4) + CBOREncoder.textString("Signature1") + CBOREncoder.byteString(protected) + CBOREncoder.byteString([]) + CBOREncoder.byteString(payload)
    }
}

/// An AWS Nitro Enclaves attestation document (aws-nitro-enclaves-nsm-api
/// `docs/attestation_process.md`): the COSE_Sign1 payload, every field's type and size checked as
/// AWS documents them, no field missing, repeated or unknown. Unverified: `NitroVerifier`
/// decides what is believed.
public struct NitroDocument: Sendable {
    public let cose: COSESign1
    /// Non-empty.
    public let moduleID: String
    /// "SHA384" (the only digest AWS defines).
    public let digest: String
    /// Milliseconds since the Unix epoch, above 0.
    public let timestamp: UInt64
    /// 1-32 PCRs, indices 0-31, values of 32, 48 or 64 bytes.
    public let pcrs: [Int: [UInt8]]
    /// The enclave's leaf certificate (DER, 1-1024 bytes).
    public let certificate: [UInt8]
    /// Root first, then each intermediate (DER, each 1-1024 bytes, at least one).
    public let cabundle: [[UInt8]]
    /// 1-1024 bytes when present.
    public let publicKey: [UInt8]?
    /// 0-512 bytes when present.
    public let userData: [UInt8]?
    /// 0-512 bytes when present.
    public let nonce: [UInt8]?

    public static let pcrLengths: Set<Int> = [32, 48, 64]

    /// Parses `bytes` (a tagged or untagged COSE_Sign1) and its payload.
    public init(bytes: [UInt8]) throws {
        cose = try COSESign1(bytes: bytes)
        guard case let .map(entries) = try CBORReader.decode(cose.payload, field: "document") else {
            throw malformed("document", "a CBOR map", got: "another item")
        }
        var fields: [String: CBOR] = [:]
        for e in entries {
            guard case let .text(name) = e.key else { throw malformed("document", "text keys", got: e.key.kind) }
            guard Self.fieldNames.contains(name) else { throw malformed("document.\(name)", "only the fields AWS defines", got: "an unknown field") }
            fields[name] = e.value
        }
        func required(_ name: String) throws -> CBOR {
            guard let v = fields[name] else { throw malformed("document.\(name)", "present", got: "missing") }
            return v
        }
        func byteField(_ name: String, _ sizes: ClosedRange<Int>, optional: Bool = false) throws -> [UInt8]? {
            let v = optional ? fields[name] ?? .null : try required(name)
            if optional, v == .null { return nil }
            guard case let .bytes(b) = v, sizes.contains(b.count) else { throw malformed("document.\(name)", "a byte string of \(sizes) bytes", got: v.kind) }
            return b
        }
        guard case let .text(module) = try required("module_id"), !module.isEmpty else { throw malformed("document.module_id", "non-empty text", got: "other") }
        guard case let .text(digest) = try required("digest"), digest == "SHA384" else { throw malformed("document.digest", "\"SHA384\"", got: "\(fields["digest"]!)") }
        guard case let .unsigned(ts) = try required("timestamp"), ts > 0 else { throw malformed("document.timestamp", "an unsigned integer above 0", got: "other") }
        guard case let .map(pcrEntries) = try required("pcrs"), (1...32).contains(pcrEntries.count) else {
            throw malformed("document.pcrs", "a map of 1-32 PCRs", got: "other")
        }
        var pcrs: [Int: [UInt8]] = [:]
        for e in pcrEntries {
            guard case let .unsigned(i) = e.key, i < 32 else { throw malformed("document.pcrs", "indices 0-31", got: e.key.kind) }
            guard case let .bytes(v) = e.value, Self.pcrLengths.contains(v.count) else {
                throw malformed("document.pcrs.\(i)", "32, 48 or 64 bytes", got: e.value.kind)
            }
            pcrs[Int(i)] = v
        }
        guard case let .array(bundle) = try required("cabundle"), !bundle.isEmpty else { throw malformed("document.cabundle", "a non-empty array", got: "other") }
        cabundle = try bundle.enumerated().map { i, c in
            guard case let .bytes(der) = c, (1...1024).contains(der.count) else { throw malformed("document.cabundle[\(i)]", "1-1024 bytes of DER", got: c.kind) }
            return der
        }
        (moduleID, self.digest, timestamp, self.pcrs) = (module, digest, ts, pcrs)
        certificate = try byteField("certificate", 1...1024)!
        publicKey = try byteField("public_key", 1...1024, optional: true)
        userData = try byteField("user_data", 0...512, optional: true)
        nonce = try byteField("nonce", 0...512, optional: true)
    }

    static let fieldNames: Set<String> = ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"]
}

extension CBOR {
    /// A short description of an item's type and size for messages.
    public var kind: String {
        switch self {
        case .unsigned, .negative: return "an integer"
        case let .bytes(b): return "\(b.count) bytes"
        case .text: return "text"
        case let .array(a): return "an array of \(a.count)"
        case let .map(m): return "a map of \(m.count)"
        case let .tagged(t, _): return "tag \(t)"
        case .bool: return "a boolean"
        case .null: return "null"
        case .undefined: return "undefined"
        }
    }
}

private func malformed(_ field: String, _ expected: String, got: String) -> VouchError {
    VouchError(.teeEvidenceMalformed, "\(field) must be \(expected)", context: ["field": field, "expected": expected, "got": got])
}
