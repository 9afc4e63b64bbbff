internal import COpenSSL
internal import CVouchShims
import Foundation
import VouchCore
import VouchTPMWire

extension ErrorCode {
    /// Not a DER OCSPResponse (RFC 6960 4.2.1) with a BasicOCSPResponse, over the size cap, or
    /// with trailing or non-canonical bytes.
    public static let ocspResponseMalformed = ErrorCode("ocsp_response_malformed", status: 422)
    /// A well-formed OCSPResponse whose responseStatus is not `successful` (no signed answer).
    public static let ocspResponseUnsuccessful = ErrorCode("ocsp_response_unsuccessful", status: 403)
    /// The BasicOCSPResponse is not signed by the issuer, nor by a responder certificate the
    /// issuer signed directly and that carries id-kp-OCSPSigning, valid at the check time.
    public static let ocspResponseSignatureInvalid = ErrorCode("ocsp_response_signature_invalid", status: 403)
    /// No SingleResponse names this certificate (serial, issuer name hash and issuer key hash).
    public static let ocspResponseNotForCertificate = ErrorCode("ocsp_response_not_for_certificate", status: 403)
    /// The answer's thisUpdate is later than the check time (beyond the allowed clock skew).
    public static let ocspResponseNotYetValid = ErrorCode("ocsp_response_not_yet_valid", status: 403)
    /// The check time is past the answer's nextUpdate (or, without one, past thisUpdate + the max age).
    public static let ocspResponseExpired = ErrorCode("ocsp_response_expired", status: 403)
}

/// What one verified OCSP answer says about one certificate.
public enum OCSPCertificateStatus: Sendable, Equatable {
    /// Not revoked, as of `thisUpdate`; the answer holds until `nextUpdate` (the response's, or
    /// thisUpdate + the max age when it has none).
    case good(thisUpdate: Date, nextUpdate: Date)
    /// Revoked at `at`; `reason` is the CRLReason code when the responder gave one.
    case revoked(at: Date, reason: Int?)
    /// The responder does not know the certificate.
    case unknown
}

/// The relying party's side of OCSP (RFC 6960): checks one DER OCSPResponse about one
/// (certificate, issuer) pair at a time T. Checks, in order: size cap; a DER OCSPResponse that
/// re-encodes to the same bytes; responseStatus successful; an id-pkix-ocsp-basic response;
/// exactly one SingleResponse whose CertID is this certificate's (serial, issuer name hash and
/// issuer key hash, with whichever of SHA-1/SHA-256/SHA-384/SHA-512 the response used); the
/// signature, by the issuer itself or by a responder certificate included in the response that the
/// issuer signed directly, valid at T and carrying id-kp-OCSPSigning (OCSP_basic_verify with the
/// issuer as the only trust: no system store, no intermediates, no "explicitly trusted" shortcut);
/// thisUpdate ≤ nextUpdate; thisUpdate ≤ T + `clockSkew`; T ≤ nextUpdate (a response without
/// nextUpdate holds until thisUpdate + `maxAgeWithoutNextUpdate`). Nonces are not checked: these
/// are stored answers, not replies to a request of ours.
public enum OCSPClient {
    public static let maxResponseBytes = 64 * 1024
    /// How far in the future a responder's thisUpdate may be (its clock against ours).
    public static let clockSkew: TimeInterval = 5 * 60
    /// How long an answer without nextUpdate is taken to hold after its thisUpdate.
    public static let defaultMaxAgeWithoutNextUpdate: TimeInterval = 24 * 60 * 60

    /// Verifies `response` for `certificate` issued by `issuer` at `at`; throws a VouchError with
    /// one of the `ocsp_response_*` codes otherwise.
    public static func verify(response: [UInt8], certificate: Certificate, issuer: Certificate, at: Date,
                              maxAgeWithoutNextUpdate: TimeInterval = defaultMaxAgeWithoutNextUpdate) throws -> OCSPCertificateStatus {
        let parsed = try ParsedOCSPResponse(response)
        return try withExtendedLifetime(parsed) {     // `single` points into `parsed`
            let single = try parsed.singleResponse(for: certificate, issuer: issuer)
            do { try parsed.verifySignature(issuer: issuer, at: at) } catch let e as VouchError where e.code == .ocspResponseSignatureInvalid {
                // A revoked answer stays true after its signer's certificate (a short-lived
                // delegated responder's, or the issuer's) expired: its signature is checked as of
                // its own thisUpdate, no later than T. Read before the signature only to pick that
                // instant; a forged "revoked" can only refuse, never admit.
                var thisUpd: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
                guard OCSP_single_get0_status(single, nil, nil, &thisUpd, nil) == V_OCSP_CERTSTATUS_REVOKED,
                      let thisUpd, let thisUpdate = date(thisUpd), thisUpdate < at else { throw e }
                try parsed.verifySignature(issuer: issuer, at: thisUpdate)
            }
            return try status(of: single, at: at, maxAgeWithoutNextUpdate: maxAgeWithoutNextUpdate)
        }
    }

    /// Checks only the structure (size, DER, successful status, a basic response), as a store
    /// does when it loads a file; says nothing about whom the response is for or whether it verifies.
    public static func checkWellFormed(_ response: [UInt8]) throws {
        _ = try ParsedOCSPResponse(response)
    }

    /// The serial numbers (as `Certificate.serialHex` writes them) of every SingleResponse of a
    /// well-formed response: for indexing stored answers, never for believing them (nothing is
    /// verified here). Empty for a response that does not parse.
    public static func serials(of response: [UInt8]) -> Set<String> {
        guard let parsed = try? ParsedOCSPResponse(response) else { return [] }
        var out: Set<String> = []
        for i in 0..<min(OCSP_resp_count(parsed.basic), 4096) {
            var serial: UnsafeMutablePointer<ASN1_INTEGER>?
            guard let single = OCSP_resp_get0(parsed.basic, i), let cid = OCSP_SINGLERESP_get0_id(single),
                  OCSP_id_get0_info(nil, nil, nil, &serial, cid) == 1, let serial, let bn = ASN1_INTEGER_to_BN(serial, nil) else { continue }
            var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
            BN_bn2bin(bn, &bytes)
            BN_free(bn)
            out.insert(bytes.isEmpty ? "0" : Hex.encode(bytes))
        }
        ERR_clear_error()
        return out
    }

    /// A DER OCSPRequest for one certificate (CertID with `hash`), without a nonce: what a fetcher
    /// posts to a responder, and what tests hand to a responder.
    public static func request(certificate: Certificate, issuer: Certificate, hash: HashAlg = .sha1) throws -> [UInt8] {
        let req = try notNil(OCSP_REQUEST_new(), "OCSP_REQUEST_new")
        defer { OCSP_REQUEST_free(req) }
        let cid = try notNil(OCSP_cert_to_id(evpMD(hash), certificate.x509, issuer.x509), "OCSP_cert_to_id")
        guard OCSP_request_add0_id(req, cid) != nil else {
            OCSP_CERTID_free(cid)
            throw opensslError("OCSP_request_add0_id")
        }
        return try derEncode("i2d_OCSP_REQUEST") { i2d_OCSP_REQUEST(req, $0) }
    }

    private static func status(of single: OpaquePointer, at: Date, maxAgeWithoutNextUpdate: TimeInterval) throws -> OCSPCertificateStatus {
        var reason: Int32 = -1
        var revokedAt: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var thisUpd: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        var nextUpd: UnsafeMutablePointer<ASN1_GENERALIZEDTIME>?
        let code = OCSP_single_get0_status(single, &reason, &revokedAt, &thisUpd, &nextUpd)
        guard let thisUpd, let thisUpdate = date(thisUpd) else {
            throw VouchError(.ocspResponseMalformed, "the OCSP answer has no readable thisUpdate")
        }
        var nextUpdate = thisUpdate.addingTimeInterval(maxAgeWithoutNextUpdate)
        if let nextUpd {
            guard let n = date(nextUpd) else { throw VouchError(.ocspResponseMalformed, "the OCSP answer's nextUpdate is unreadable") }
            nextUpdate = n
        }
        guard thisUpdate <= nextUpdate else {
            throw VouchError(.ocspResponseMalformed, "the OCSP answer's nextUpdate is before its thisUpdate",
                             context: ["thisUpdate": timestamp(thisUpdate), "nextUpdate": timestamp(nextUpdate)])
        }
        guard thisUpdate <= at.addingTimeInterval(clockSkew) else {
            throw VouchError(.ocspResponseNotYetValid, "the OCSP answer's thisUpdate is after the check time",
                             context: ["thisUpdate": timestamp(thisUpdate), "at": timestamp(at)])
        }
        // A verified revocation stays true after the answer's nextUpdate (a certificate is not
        // unrevoked by time): only good and unknown answers expire.
        guard at <= nextUpdate || code == V_OCSP_CERTSTATUS_REVOKED else {
            throw VouchError(.ocspResponseExpired, nextUpd == nil ? "the OCSP answer has no nextUpdate and is older than the max age"
                                                                  : "the check time is past the OCSP answer's nextUpdate",
                             context: ["nextUpdate": timestamp(nextUpdate), "at": timestamp(at)])
        }
        switch code {
        case V_OCSP_CERTSTATUS_GOOD:
            return .good(thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        case V_OCSP_CERTSTATUS_REVOKED:
            guard let revokedAt, let when = date(revokedAt) else {
                throw VouchError(.ocspResponseMalformed, "a revoked OCSP answer without a readable revocationTime")
            }
            return .revoked(at: when, reason: reason >= 0 ? Int(reason) : nil)
        case V_OCSP_CERTSTATUS_UNKNOWN:
            return .unknown
        default:
            throw VouchError(.ocspResponseMalformed, "the OCSP answer's certStatus is not good, revoked or unknown", context: ["certStatus": "\(code)"])
        }
    }

    private static func date(_ t: UnsafePointer<ASN1_TIME>) -> Date? {
        var tm = tm()
        guard ASN1_TIME_to_tm(t, &tm) == 1 else { ERR_clear_error(); return nil }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
    }

    private static func timestamp(_ d: Date) -> String { ISO8601DateFormatter().string(from: d) }
}

/// One decoded OCSPResponse and its BasicOCSPResponse (both owned, freed in deinit).
private final class ParsedOCSPResponse {
    let response: OpaquePointer
    let basic: OpaquePointer

    init(_ der: [UInt8]) throws {
        guard !der.isEmpty, der.count <= OCSPClient.maxResponseBytes else {
            throw VouchError(.ocspResponseMalformed, "an OCSP response is empty or over the size cap",
                             context: ["bytes": "\(der.count)", "max": "\(OCSPClient.maxResponseBytes)"])
        }
        var consumed = 0
        let resp: OpaquePointer? = der.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            let r = d2i_OCSP_RESPONSE(nil, &p, buf.count)
            if let p, let base = buf.baseAddress { consumed = p - base }
            return r
        }
        guard let resp else { ERR_clear_error(); throw VouchError(.ocspResponseMalformed, "not a DER OCSPResponse") }
        guard consumed == der.count,
              let again = try? derEncode("i2d_OCSP_RESPONSE", { i2d_OCSP_RESPONSE(resp, $0) }), again == der else {
            OCSP_RESPONSE_free(resp)
            ERR_clear_error()
            throw VouchError(.ocspResponseMalformed, "the OCSP response has trailing bytes or is not in canonical DER")
        }
        let status = OCSP_response_status(resp)
        guard status == OCSP_RESPONSE_STATUS_SUCCESSFUL else {
            OCSP_RESPONSE_free(resp)
            throw VouchError(.ocspResponseUnsuccessful, "the OCSP responder answered with an error status", context: ["responseStatus": "\(status)"])
        }
        guard let basic = OCSP_response_get1_basic(resp) else {
            OCSP_RESPONSE_free(resp)
            ERR_clear_error()
            throw VouchError(.ocspResponseMalformed, "the OCSP response is not a BasicOCSPResponse")
        }
        // The BasicOCSPResponse sits in an OCTET STRING, which the whole response's re-encoding
        // above keeps as raw bytes: it must itself be canonical DER (OpenSSL checks the signature
        // over a re-encoding of tbsResponseData, so a non-canonical form of a signed response
        // would verify). It is the response's last element: its bytes end the response, after
        // the OCTET STRING's tag and length.
        guard let inner = try? derEncode("i2d_OCSP_BASICRESP", { i2d_OCSP_BASICRESP(basic, $0) }), Self.endsWithOctetString(der, inner) else {
            OCSP_BASICRESP_free(basic)
            OCSP_RESPONSE_free(resp)
            ERR_clear_error()
            throw VouchError(.ocspResponseMalformed, "the BasicOCSPResponse is not in canonical DER")
        }
        response = resp
        self.basic = basic
    }

    deinit {
        OCSP_BASICRESP_free(basic)
        OCSP_RESPONSE_free(response)
    }

    /// True when `der` ends with an OCTET STRING (tag, DER length) whose content is `inner`.
    static func endsWithOctetString(_ der: [UInt8], _ inner: [UInt8]) -> Bool {
        let n = inner.count
        let header: [UInt8] = n < 0x80 ? [0x04, UInt8(n)] : n < 0x100 ? [0x04, 0x81, UInt8(n)]
            : n < 0x10000 ? [0x04, 0x82, UInt8(n >> 8), UInt8(n & 0xff)] : [0x04, 0x83, UInt8(n >> 16), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        guard der.count >= n + header.count else { return false }
        return Array(der.suffix(n)) == inner && Array(der[(der.count - n - header.count)..<(der.count - n)]) == header
    }

    /// The one SingleResponse whose CertID is the certificate's, compared with the hash the
    /// response used. Selecting only: nothing it says is believed before the signature verifies.
    func singleResponse(for certificate: Certificate, issuer: Certificate) throws -> OpaquePointer {
        var found: [OpaquePointer] = []
        let count = OCSP_resp_count(basic)
        guard count > 0 else { throw VouchError(.ocspResponseMalformed, "the OCSP response carries no SingleResponse") }
        for i in 0..<count {
            guard let single = OCSP_resp_get0(basic, i), let cid = OCSP_SINGLERESP_get0_id(single) else { continue }
            var mdObj: OpaquePointer?
            guard OCSP_id_get0_info(nil, &mdObj, nil, nil, cid) == 1, let mdObj,
                  let hash = Self.allowedHash(OBJ_obj2nid(mdObj)),
                  let ours = OCSP_cert_to_id(evpMD(hash), certificate.x509, issuer.x509) else { ERR_clear_error(); continue }
            defer { OCSP_CERTID_free(ours) }
            if OCSP_id_cmp(ours, cid) == 0 { found.append(single) }
        }
        ERR_clear_error()
        guard !found.isEmpty else {
            throw VouchError(.ocspResponseNotForCertificate, "the OCSP response has no answer for this certificate",
                             context: ["serial": certificate.serialHex, "issuer": issuer.subject])
        }
        guard found.count == 1 else {
            throw VouchError(.ocspResponseMalformed, "the OCSP response answers twice for one certificate", context: ["serial": certificate.serialHex])
        }
        return found[0]
    }

    /// OCSP_basic_verify with only `issuer` trusted (partial chain: it need not be a root) at `at`.
    /// `issuer` is also offered as a possible signer (a response signed by the CA need not include
    /// its certificate). NOCHAIN: a delegated responder must be signed by the issuer directly (no
    /// intermediates from the response); NOEXPLICIT: no trust-setting shortcut; OpenSSL then
    /// requires the delegated responder to carry id-kp-OCSPSigning and its issuer to be the one
    /// every CertID names, or the signer to be that issuer itself.
    func verifySignature(issuer: Certificate, at: Date) throws {
        let store = try notNil(X509_STORE_new(), "X509_STORE_new")
        defer { X509_STORE_free(store) }
        try check(X509_STORE_add_cert(store, issuer.x509), "X509_STORE_add_cert")
        let param = try notNil(X509_STORE_get0_param(store), "X509_STORE_get0_param")
        X509_VERIFY_PARAM_set_time(param, time_t(at.timeIntervalSince1970))
        let signers = try notNil(OPENSSL_sk_new_null(), "sk_new")
        defer { OPENSSL_sk_free(signers) }
        guard OPENSSL_sk_push(signers, UnsafeRawPointer(issuer.x509)) > 0 else { throw opensslError("sk_push") }
        let flags = UInt(OCSP_NOCHAIN | OCSP_NOEXPLICIT | OCSP_PARTIAL_CHAIN)
        let rc = OCSP_basic_verify(basic, signers, store, flags)
        guard rc == 1 else {
            let reason = opensslError("OCSP_basic_verify").context["openssl"] ?? ""
            throw VouchError(.ocspResponseSignatureInvalid, "the OCSP response is not signed by the issuer or a responder it authorised",
                             context: ["issuer": issuer.subject, "openssl": reason])
        }
    }

    private static func allowedHash(_ nid: Int32) -> HashAlg? {
        switch nid {
        case NID_sha1: .sha1
        case NID_sha256: .sha256
        case NID_sha384: .sha384
        case NID_sha512: .sha512
        default: nil
        }
    }
}
