import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire
import VouchTestSupport

/// A software ECC P-256 AK with a chosen template scheme, and quotes it signs as a TPM would.
struct SoftwareAK {
    let key: PrivateKey
    let tpmPublic: TPMTPublic

    /// `scheme` .null makes a template with TPM_ALG_NULL (no hash) in place of ECDSA/`hash`.
    init(scheme: TPMAlg = .ecdsa, hash: HashAlg = .sha256) throws {
        key = try PrivateKey.generate(.p256)
        let point = try XCTUnwrap(key.publicKey.ecJWKParameters)
        let template = KeyTemplates.eccP256AttestationKey(x: point.x, y: point.y)
        // type, nameAlg, objectAttributes, empty authPolicy, symmetric null: the scheme is at 12.
        var w = ByteWriter()
        w.raw(Array(template[0..<12]))
        w.u16(scheme.rawValue)
        if scheme != .null { w.u16(hash.tpmAlg.rawValue) }
        w.raw(Array(template[16...]))
        var r = ByteReader(w.bytes)
        tpmPublic = try TPMTPublic(from: &r)
    }

    var tpm2b: [UInt8] { tpmPublic.tpm2b }

    /// A quote of SHA-256 PCR 0 (all zero), and PCR 23 when `pcr23` is given, its digest with
    /// `digestHash`, signed with `signHash`; the TPMT_SIGNATURE names `namedHash` (default: `signHash`).
    func quote(nonce: [UInt8], firmwareVersion: UInt64 = 0x2026_0001, digestHash: HashAlg = .sha256, signHash: HashAlg = .sha256,
               namedHash: HashAlg? = nil, pcr23: [UInt8]? = nil) throws -> (attest: [UInt8], signature: [UInt8], pcrs: PCRValues) {
        let selection = PCRSelection(banks: [PCRBankSelection(hash: .sha256, pcrs: pcr23 == nil ? [0] : [0, 23])])
        var bank: [Int: [UInt8]] = [0: [UInt8](repeating: 0, count: 32)]
        if let pcr23 { bank[23] = pcr23 }
        let pcrs = PCRValues([.sha256: bank])
        var w = ByteWriter()
        w.u32(TPMConstants.generatedValue)
        w.u16(TPMConstants.stAttestQuote)
        w.sized(CredentialProtection.name(of: tpmPublic))
        w.sized(nonce)
        w.u64(1000); w.u32(1); w.u32(0); w.u8(1)        // clock, resetCount, restartCount, safe
        w.u64(firmwareVersion)
        selection.marshal(into: &w)
        w.sized(Crypto.digest(digestHash, try pcrs.concatenated(for: selection)))
        let attest = w.bytes
        var der = DER.Reader(try key.sign(attest, hash: signHash))
        var seq = try der.sequence("ECDSA-Sig-Value")
        let r = try seq.read(DER.integerTag, "r"), s = try seq.read(DER.integerTag, "s")
        var sig = ByteWriter()
        sig.u16(TPMAlg.ecdsa.rawValue)
        sig.u16((namedHash ?? signHash).tpmAlg.rawValue)
        sig.sized(Array(r.drop { $0 == 0 }))
        sig.sized(Array(s.drop { $0 == 0 }))
        return (attest, sig.bytes, pcrs)
    }
}

/// The AK's public area decides the signature scheme and hash; SHA-1 only where allowed; a TPM
/// firmware downgrade is refused unless the policy allows it.
final class AttestationKeySchemeTests: XCTestCase {
    let nonce = [UInt8](repeating: 7, count: 32)

    func code(_ v: QuoteVerdict) -> ErrorCode? {
        if case let .rejected(errors) = v { return errors.first?.code }
        return nil
    }

    func verify(_ ak: SoftwareAK, _ q: (attest: [UInt8], signature: [UInt8], pcrs: PCRValues), allowSHA1: Bool = false) -> QuoteVerdict {
        QuoteVerifier.verify(attest: q.attest, signature: q.signature, akPublic: ak.tpmPublic, expectedQualifyingData: nonce, pcrs: q.pcrs, allowSHA1: allowSHA1)
    }

    func testQuoteWithTheAKsSchemeAndHashVerifies() throws {
        let ak = try SoftwareAK()
        guard case let .verified(q) = verify(ak, try ak.quote(nonce: nonce)) else { return XCTFail("genuine quote rejected") }
        XCTAssertEqual(q.signatureHash, .sha256)
    }

    /// A signature the AK really made, over SHA-1, is refused because the AK's template says SHA-256
    /// — before verification, and whatever SHA-1 allowance applies.
    func testSignatureNamingSHA1IsRefusedForASHA256AK() throws {
        let ak = try SoftwareAK()
        let q = try ak.quote(nonce: nonce, digestHash: .sha1, signHash: .sha1)
        XCTAssertEqual(code(verify(ak, q)), .quoteSignatureSchemeMismatch)
        XCTAssertEqual(code(verify(ak, q, allowSHA1: true)), .quoteSignatureSchemeMismatch)
        // Naming another hash than the one signed with is refused the same way, unverified.
        XCTAssertEqual(code(verify(ak, try ak.quote(nonce: nonce, namedHash: .sha384))), .quoteSignatureSchemeMismatch)
    }

    func testSignatureNamingAnotherSchemeIsRefused() throws {
        let ak = try SoftwareAK()
        var q = try ak.quote(nonce: nonce)
        q.signature[1] = UInt8(TPMAlg.rsassa.rawValue)   // sigAlg ECDSA -> RSASSA (then it parses as an RSA signature)
        XCTAssertNotEqual(code(verify(ak, q)), nil)
        let rsaNamed = [0x00, 0x14, 0x00, 0x0B, 0x00, 0x02, 0x01, 0x02] as [UInt8]   // RSASSA, SHA-256, 2-byte signature
        XCTAssertEqual(code(verify(ak, (q.attest, rsaNamed, q.pcrs))), .quoteSignatureSchemeMismatch)
    }

    func testSHA1AKIsRefusedUnlessAllowed() throws {
        let ak = try SoftwareAK(hash: .sha1)
        let q = try ak.quote(nonce: nonce, digestHash: .sha1, signHash: .sha1)
        XCTAssertEqual(code(verify(ak, q)), .akSchemeNotAllowed)
        guard case let .verified(v) = verify(ak, q, allowSHA1: true) else { return XCTFail("SHA-1 AK refused with the allowance") }
        XCTAssertEqual(v.signatureHash, .sha1)
    }

    func testNullSchemeAKIsRefused() throws {
        let ak = try SoftwareAK(scheme: .null)
        XCTAssertNil(ak.tpmPublic.schemeHash)
        let q = try ak.quote(nonce: nonce)
        XCTAssertEqual(code(verify(ak, q)), .akSchemeNotAllowed)
        XCTAssertEqual(code(verify(ak, q, allowSHA1: true)), .akSchemeNotAllowed)
    }

    /// TPM2_Certify signatures go through the same first steps.
    func testCertifyVerifierUsesTheAKsScheme() throws {
        let ak = try SoftwareAK()
        let q = try ak.quote(nonce: nonce, digestHash: .sha1, signHash: .sha1)
        let key = try AttestationKey(tpmPublic: ak.tpmPublic)
        guard case let .failure(e) = CertifyVerifier.verify(attest: q.attest, signature: q.signature, ak: key, keyPublic: [], expectedQualifyingData: nonce) else {
            return XCTFail("certification with a mismatched hash accepted")
        }
        XCTAssertEqual(e.code, .quoteSignatureSchemeMismatch)
        let sha1 = try SoftwareAK(hash: .sha1)
        let q1 = try sha1.quote(nonce: nonce, digestHash: .sha1, signHash: .sha1)
        guard case let .failure(e1) = CertifyVerifier.verify(attest: q1.attest, signature: q1.signature, ak: try AttestationKey(tpmPublic: sha1.tpmPublic),
                                                             keyPublic: [], expectedQualifyingData: nonce) else { return XCTFail() }
        XCTAssertEqual(e1.code, .akSchemeNotAllowed)
    }

    /// Registration refuses an AK whose template fixes SHA-1 or no scheme, unless the policy allows SHA-1.
    func testRegistrationChecksTheAKScheme() throws {
        let all = KeyTemplates.AKKind.allCases
        XCTAssertNoThrow(try EndorsementVerifier.checkAttestationKey(try SoftwareAK().tpm2b, allowed: all).get())
        let sha1 = try SoftwareAK(hash: .sha1).tpm2b
        XCTAssertThrowsError(try EndorsementVerifier.checkAttestationKey(sha1, allowed: all).get()) { XCTAssertEqual(($0 as? VouchError)?.code, .akRejected) }
        XCTAssertNoThrow(try EndorsementVerifier.checkAttestationKey(sha1, allowed: all, allowSHA1: true).get())
        XCTAssertThrowsError(try EndorsementVerifier.checkAttestationKey(try SoftwareAK(scheme: .null).tpm2b, allowed: all, allowSHA1: true).get()) {
            XCTAssertEqual(($0 as? VouchError)?.code, .akRejected)
        }
    }

    // MARK: firmware version

    func appraise(firmware: UInt64, previous: ClockState?, _ configure: (inout Policy) -> Void = { _ in }) throws -> Appraisal {
        let ak = try SoftwareAK()
        guard case let .verified(q) = verify(ak, try ak.quote(nonce: nonce, firmwareVersion: firmware)) else { throw TestFailure("the genuine quote was rejected") }
        var policy = Policy(name: "t", version: 1, pcrBank: .sha256, pcrValues: [:])
        configure(&policy)
        return Appraiser.appraise(hostID: "h", quote: q, eventLog: nil, modelLog: nil, previousClock: previous, policy: policy, digester: OpenSSLDigester())
    }

    func codes(_ a: Appraisal) -> [ErrorCode] {
        if case let .rejected(v, _) = a { return v.map(\.code) }
        return []
    }

    func previous(firmware: UInt64?) -> ClockState {
        ClockState(resetCount: 1, restartCount: 0, clock: 500, safe: true, firmwareVersion: firmware)
    }

    func testFirmwareVersionIsRecordedWithTheClock() throws {
        guard case let .trusted(e) = try appraise(firmware: 0x2026_0002, previous: nil) else { return XCTFail("refused") }
        XCTAssertEqual(e.claims.clock?.firmwareVersion, 0x2026_0002)
    }

    func testFirmwareDowngradeIsRefused() throws {
        XCTAssertEqual(codes(try appraise(firmware: 0x2026_0001, previous: previous(firmware: 0x2026_0002))), [.firmwareDowngraded])
        // The same or a newer firmware, or a previous record made before firmware versions were kept, pass.
        for prev: UInt64? in [0x2026_0001, 0x2025_0009, nil] {
            guard case .trusted = try appraise(firmware: 0x2026_0001, previous: previous(firmware: prev)) else { return XCTFail("\(String(describing: prev))") }
        }
    }

    func testFirmwareDowngradeIsAcceptedWhenThePolicyAllowsIt() throws {
        let a = try appraise(firmware: 0x2026_0001, previous: previous(firmware: 0x2026_0002)) { $0.allowFirmwareDowngrade = true }
        guard case let .trusted(e) = a else { return XCTFail("refused: \(codes(a))") }
        XCTAssertEqual(e.claims.clock?.firmwareVersion, 0x2026_0001)
    }

    func testMinimumFirmwareVersion() throws {
        XCTAssertEqual(codes(try appraise(firmware: 0x2026_0001, previous: nil) { $0.minimumFirmwareVersion = 0x2026_0002 }), [.firmwareTooOld])
        guard case .trusted = try appraise(firmware: 0x2026_0002, previous: nil, { $0.minimumFirmwareVersion = 0x2026_0002 }) else { return XCTFail() }
    }

    /// Claims stored before firmware versions were kept still decode.
    func testStoredClockWithoutFirmwareVersionDecodes() throws {
        let old = try JSONDecoder().decode(ClockState.self, from: Data(#"{"resetCount":3,"restartCount":1,"clock":99,"safe":true}"#.utf8))
        XCTAssertNil(old.firmwareVersion)
        XCTAssertEqual(old.resetCount, 3)
    }
}
