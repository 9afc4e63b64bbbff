import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTPMWire

/// An attestation key held in software, with quotes in the real wire formats: a TPM2B_PUBLIC of the
/// ECC P-256 AK template (or the RSA 2048 one: a simulated Azure vTPM's AK), TPMS_ATTEST
/// (TPM_ST_ATTEST_QUOTE) and TPMT_SIGNATURE (ECDSA or RSASSA, SHA-256).
/// INSECURE by design — nothing proves a TPM holds it. For simulated fleets (scale tests, refused
/// by a broker without --allow-simulated-hosts) and in-process tests only.
public struct SoftwareAK: Sendable {
    public let key: PrivateKey
    /// TPM2B_PUBLIC of the AK.
    public let publicArea: [UInt8]
    /// The AK's TPM name (nameAlg ‖ SHA-256(TPMT_PUBLIC)).
    public let name: [UInt8]

    public init() throws {
        try self.init(key: try PrivateKey.generate(.p256))
    }

    /// An AK for `key`: an ECC P-256 key, or an RSA 2048 key (`rsaModulus` its big-endian modulus).
    public init(key: PrivateKey, rsaModulus: [UInt8]? = nil) throws {
        self.key = key
        let tpmt: [UInt8]
        if let rsaModulus {
            var t = ByteWriter()
            t.raw(Array(KeyTemplates.attestationKey(.rsa2048).dropLast(2)))   // all but the empty unique field
            t.sized(rsaModulus)
            tpmt = t.bytes
        } else {
            guard let point = try key.publicKey.ecJWKParameters else { throw VouchError(.crypto, "software AK has no EC point") }
            tpmt = KeyTemplates.eccP256AttestationKey(x: point.x, y: point.y)
        }
        var w = ByteWriter()
        w.sized(tpmt)
        publicArea = w.bytes
        name = [0x00, 0x0B] + Crypto.sha256(tpmt)
    }

    /// A quote over `selection` with these PCR values and `qualifyingData`; the TPM clock reads
    /// `clockMilliseconds` (reset and restart counts 0, safe), firmware version 0x20261124.
    public func quote(qualifyingData: [UInt8], selection: PCRSelection, pcrs: PCRValues, clockMilliseconds: UInt64) throws -> QuoteBody {
        var w = ByteWriter()
        w.u32(TPMConstants.generatedValue)
        w.u16(0x8018)                                   // TPM_ST_ATTEST_QUOTE
        w.sized(name)
        w.sized(qualifyingData)
        w.u64(clockMilliseconds)
        w.u32(0)                                        // resetCount
        w.u32(0)                                        // restartCount
        w.u8(1)                                         // safe
        w.u64(0x2026_1124)                              // firmwareVersion
        selection.marshal(into: &w)
        w.sized(Crypto.sha256(try pcrs.concatenated(for: selection)))
        let attest = w.bytes
        var sig = ByteWriter()
        if try key.publicKey.isRSA {
            sig.u16(TPMAlg.rsassa.rawValue)
            sig.u16(TPMAlg.sha256.rawValue)
            sig.sized(try key.sign(attest, hash: .sha256))
        } else {
            var der = DER.Reader(try key.sign(attest, hash: .sha256))
            var seq = try der.sequence("ECDSA-Sig-Value")
            let r = try seq.read(DER.integerTag, "r"), s = try seq.read(DER.integerTag, "s")
            sig.u16(TPMAlg.ecdsa.rawValue)
            sig.u16(TPMAlg.sha256.rawValue)
            sig.sized(Array(r.drop { $0 == 0 }))
            sig.sized(Array(s.drop { $0 == 0 }))
        }
        return QuoteBody(attest: Base64.encode(attest), signature: Base64.encode(sig.bytes), pcrs: pcrs.hexMap)
    }
}
