internal import COpenSSL
internal import CVouchShims
import Foundation
import VouchCore

/// The revocation status of one certificate, as the issuer's records say.
public enum CertificateStatusValue: Sendable, Equatable {
    case good
    case revoked(at: Date, reason: Int)
    case unknown
}

/// An OCSP responder (RFC 6960) for one CA: parses a DER OCSPRequest, answers each CertID that
/// names this CA with the status `lookup` gives (other issuers: unknown), echoes the nonce
/// extension, and signs the BasicOCSPResponse with the CA key. Malformed requests get a
/// `malformedRequest` OCSPResponse, never a crash.
public struct OCSPResponder: Sendable {
    public let ca: CertificateAuthority
    public static let maxRequestBytes = 16 * 1024
    public static let maxCertIDs = 32

    public init(ca: CertificateAuthority) { self.ca = ca }

    public func respond(to requestDER: [UInt8], now: Date, validity: TimeInterval,
                        lookup: (String) throws -> CertificateStatusValue) throws -> [UInt8] {
        guard requestDER.count <= Self.maxRequestBytes else { return try Self.errorResponse(1) }
        let req: OpaquePointer? = requestDER.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_OCSP_REQUEST(nil, &p, buf.count)
        }
        guard let req else { ERR_clear_error(); return try Self.errorResponse(1) }     // malformedRequest
        defer { OCSP_REQUEST_free(req) }
        let count = OCSP_request_onereq_count(req)
        guard count > 0, count <= Int32(Self.maxCertIDs) else { return try Self.errorResponse(1) }

        let basic = try notNil(OCSP_BASICRESP_new(), "OCSP_BASICRESP_new")
        defer { OCSP_BASICRESP_free(basic) }
        let thisUpdate = try time(now), nextUpdate = try time(now.addingTimeInterval(validity))
        defer { ASN1_TIME_free(thisUpdate); ASN1_TIME_free(nextUpdate) }
        for i in 0..<count {
            guard let one = OCSP_request_onereq_get0(req, i), let cid = OCSP_onereq_get0_id(one) else { return try Self.errorResponse(1) }
            var mdObj: OpaquePointer?
            var serial: UnsafeMutablePointer<ASN1_INTEGER>?
            guard OCSP_id_get0_info(nil, &mdObj, nil, &serial, cid) == 1, let mdObj, let serial else { return try Self.errorResponse(1) }
            // Same hash algorithm as the request, so the issuer comparison is like for like.
            var status = CertificateStatusValue.unknown
            if let md = EVP_get_digestbyname(OBJ_nid2sn(OBJ_obj2nid(mdObj))), let ours = OCSP_cert_to_id(md, nil, ca.certificate.x509) {
                defer { OCSP_CERTID_free(ours) }
                if OCSP_id_issuer_cmp(ours, cid) == 0, let bn = ASN1_INTEGER_to_BN(serial, nil) {
                    var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
                    BN_bn2bin(bn, &bytes)
                    BN_free(bn)
                    status = try lookup(bytes.isEmpty ? "0" : Hex.encode(bytes))
                }
            }
            ERR_clear_error()
            let added: OpaquePointer?
            switch status {
            case .good:
                added = OCSP_basic_add1_status(basic, cid, V_OCSP_CERTSTATUS_GOOD, 0, nil, thisUpdate, nextUpdate)
            case .unknown:
                added = OCSP_basic_add1_status(basic, cid, V_OCSP_CERTSTATUS_UNKNOWN, 0, nil, thisUpdate, nextUpdate)
            case let .revoked(at, reason):
                let revokedAt = try time(at)
                defer { ASN1_TIME_free(revokedAt) }
                added = OCSP_basic_add1_status(basic, cid, V_OCSP_CERTSTATUS_REVOKED, Int32(reason), revokedAt, thisUpdate, nextUpdate)
            }
            _ = try notNil(added, "OCSP_basic_add1_status")
        }
        guard OCSP_copy_nonce(basic, req) > 0 else { throw opensslError("OCSP_copy_nonce") }
        try check(OCSP_basic_sign(basic, ca.certificate.x509, ca.key.pkey, EVP_sha256(), nil, 0), "OCSP_basic_sign")
        let resp = try notNil(OCSP_response_create(Int32(OCSP_RESPONSE_STATUS_SUCCESSFUL), basic), "OCSP_response_create")
        defer { OCSP_RESPONSE_free(resp) }
        return try derEncode("i2d_OCSP_RESPONSE") { i2d_OCSP_RESPONSE(resp, $0) }
    }

    /// True if the request's first CertID names `issuer` (so that CA should answer it).
    public static func requestNames(_ requestDER: [UInt8], issuer: Certificate) -> Bool {
        guard requestDER.count <= maxRequestBytes else { return false }
        let req: OpaquePointer? = requestDER.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_OCSP_REQUEST(nil, &p, buf.count)
        }
        guard let req else { ERR_clear_error(); return false }
        defer { OCSP_REQUEST_free(req) }
        guard OCSP_request_onereq_count(req) > 0, let one = OCSP_request_onereq_get0(req, 0), let cid = OCSP_onereq_get0_id(one) else { return false }
        var mdObj: OpaquePointer?
        guard OCSP_id_get0_info(nil, &mdObj, nil, nil, cid) == 1, let mdObj,
              let md = EVP_get_digestbyname(OBJ_nid2sn(OBJ_obj2nid(mdObj))), let ours = OCSP_cert_to_id(md, nil, issuer.x509) else {
            ERR_clear_error()
            return false
        }
        defer { OCSP_CERTID_free(ours) }
        return OCSP_id_issuer_cmp(ours, cid) == 0
    }

    /// An unsigned OCSPResponse with only an error status (1 malformedRequest, 2 internalError).
    public static func errorResponse(_ status: Int32) throws -> [UInt8] {
        let resp = try notNil(OCSP_response_create(status, nil), "OCSP_response_create")
        defer { OCSP_RESPONSE_free(resp) }
        return try derEncode("i2d_OCSP_RESPONSE") { i2d_OCSP_RESPONSE(resp, $0) }
    }

    private func time(_ d: Date) throws -> UnsafeMutablePointer<ASN1_TIME> {
        try notNil(ASN1_TIME_set(nil, time_t(d.timeIntervalSince1970)), "ASN1_TIME_set")
    }
}
