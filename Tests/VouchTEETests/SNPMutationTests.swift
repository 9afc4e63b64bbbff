import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// Which codes a change of one report byte may be refused with: the field's parse rule, the
/// binding check that compares it with the endorsement, or the signature.
enum SNPMutation {
    static let signature = "snp_report_signature_invalid", malformed = "tee_evidence_malformed", product = "snp_product_mismatch",
               tcb = "snp_tcb_mismatch", hwID = "snp_hwid_mismatch", untrusted = "snp_endorsement_untrusted"

    static func allowedCodes(offset: Int, original r: SNPReport, line: SNPProduct? = nil) -> Set<String> {
        switch offset {
        case 0x000..<0x004: return [malformed, product, signature]                  // VERSION: another layout
        case 0x004..<0x008: return [signature]
        case 0x008..<0x010: return [malformed, signature]                           // POLICY: reserved bits
        case 0x010..<0x048: return [signature]                                      // IDs, VMPL, algorithm, CURRENT_TCB, PLATFORM_INFO
        case 0x048: return [signature, malformed, untrusted]                        // SIGNING_KEY: the other key kind
        case 0x049..<0x050: return [malformed]
        case 0x050..<0x180: return [signature]
        case 0x180..<0x188: return [tcb]                                            // REPORTED_TCB against the SPLs
        case 0x188..<0x18B where r.version >= 3: return [product, signature]        // CPUID
        case 0x188..<0x1A0: return [malformed]
        case 0x1A0..<0x1E0:                                                         // CHIP_ID against the hwID
            guard r.signingKey == .vcek else { return [signature] }
            return line == .turin && offset >= 0x1A8 ? [signature] : [hwID]
        case 0x1E0..<0x1EB, 0x1EC..<0x1EF, 0x1F0..<0x1F8: return [signature]
        case 0x1EB, 0x1EF: return [malformed]
        case 0x1F8..<0x208 where r.version >= 5: return [signature]
        case 0x1F8..<0x2A0: return [malformed]
        case 0x2A0..<0x330: return [signature]
        default: return [malformed]                                                 // SIGNATURE's reserved part
        }
    }
}

/// Seeded mutations of every byte the verifier reads, in the real samples' reports and
/// endorsement certificates. Replay a failure with VOUCH_TEST_SEED.
final class SNPMutationTests: XCTestCase {
    static let iterations = 300

    func testRandomReportMutationsAreRefusedWithTheFieldsCode() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let samples = try SNPFixtures.samples()
        for i in 0..<Self.iterations {
            let sample = samples[Int.random(in: 0..<samples.count, using: &rng)]
            let original = try SNPReport(bytes: sample.report)
            var bytes = sample.report
            let offset = Int.random(in: 0..<bytes.count, using: &rng)
            bytes[offset] ^= UInt8.random(in: 1...255, using: &rng)
            let result = verifier.verify(SNPEvidence(report: bytes, endorsementKey: sample.signer), at: SNPFixtures.now, policy: Self.permissive)
            let allowed = SNPMutation.allowedCodes(offset: offset, original: original)
            XCTAssertEqual(result.violations.count, 1, "\(seed) #\(i) \(sample.dir) 0x\(String(offset, radix: 16))")
            XCTAssertTrue(allowed.contains(result.codes.first ?? "verified"),
                          "\(seed) #\(i) \(sample.dir) 0x\(String(offset, radix: 16)): \(result.codes) not in \(allowed.sorted())")
            XCTAssertNil(result.claims, "\(seed) #\(i)")
        }
    }

    func testRandomEndorsementMutationsAreRefused() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let samples = try SNPFixtures.samples().filter { !$0.signer.starts(with: Array("-----".utf8)) }
        for i in 0..<Self.iterations {
            let sample = samples[Int.random(in: 0..<samples.count, using: &rng)]
            var cert = sample.signer
            let offset = Int.random(in: 0..<cert.count, using: &rng)
            cert[offset] ^= UInt8.random(in: 1...255, using: &rng)
            let result = verifier.verify(SNPEvidence(report: sample.report, endorsementKey: cert), at: SNPFixtures.now, policy: Self.permissive)
            XCTAssertTrue(["tee_evidence_malformed", "snp_endorsement_untrusted"].contains(result.codes.first ?? "verified"),
                          "\(seed) #\(i) \(sample.dir) certificate byte \(offset): \(result.codes)")
            XCTAssertNil(result.claims)
        }
    }

    /// Every report field the policy reads, changed in a software-TEE report that is signed
    /// again: refused with the field's code under a policy pinning the original value, and still
    /// verified under the default policy when the default does not read it.
    func testRandomPolicyFieldChangesChangeOnlyTheVerdictsThatReadThem() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let sim = SNPSim.milan
        let verifier = try SNPSim.verifier([sim])
        let base = sim.report()
        var strict = SNPPolicy()
        strict.allowSMT = false
        strict.allowedVMPLs = [0]
        strict.minimumTCB = [.milan: .init(reported: .init(bootloader: 3, tee: 0, snp: 8, microcode: 115), committed: .init(snp: 8), launch: .init(microcode: 115))]
        strict.measurements = [.init(name: "image", value: base.measurement)]
        strict.hostData = [base.hostData]
        strict.idKeyDigests = [base.idKeyDigest]
        strict.authorKeyDigests = [base.authorKeyDigest]
        strict.reportData = base.reportData
        var noSMT = base
        noSMT.platformInfo = SNPPlatformInfo(raw: 0b10)
        XCTAssertTrue(verifier.verify(SNPEvidence(report: try sim.sign(noSMT), endorsementKey: try sim.vcek.der), at: SNPFixtures.now, policy: strict).isVerified)

        func lower(_ t: SNPTCBVersion, _ rng: inout SplitMix64) -> SNPTCBVersion {
            var c = t.components(for: .milan)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: c.bootloader = UInt8.random(in: 0..<c.bootloader, using: &rng)
            case 1: c.snp = UInt8.random(in: 0..<c.snp, using: &rng)
            default: c.microcode = UInt8.random(in: 0..<c.microcode, using: &rng)
            }
            return SNPTCBVersion(c, product: .milan)
        }
        func differentBytes(_ b: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
            var out = b
            out[Int.random(in: 0..<b.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            return out
        }
        for i in 0..<60 {
            var r = noSMT
            let field = Int.random(in: 0..<11, using: &rng)
            let (code, defaultRefuses): (String, Bool)
            switch field {
            case 0: r.policy = SNPGuestPolicy(raw: r.policy.raw | 1 << 19); (code, defaultRefuses) = ("snp_debug_enabled", true)
            case 1: r.policy = SNPGuestPolicy(raw: r.policy.raw | 1 << 18); (code, defaultRefuses) = ("snp_migration_agent_allowed", true)
            case 2: r.platformInfo = SNPPlatformInfo(raw: r.platformInfo.raw | 1); (code, defaultRefuses) = ("snp_smt_enabled", false)
            case 3: r.vmpl = UInt32.random(in: 1...3, using: &rng); (code, defaultRefuses) = ("snp_vmpl_not_allowed", false)
            case 4: r.committedTCB = SNPTCBVersion(SNPTCBComponents(bootloader: 3, tee: 0, snp: UInt8.random(in: 0..<8, using: &rng), microcode: 115), product: .milan)
                (code, defaultRefuses) = ("snp_tcb_too_old", false)
            case 5: r.launchTCB = lower(r.launchTCB, &rng)
                // Only the launch microcode is constrained.
                (code, defaultRefuses) = (r.launchTCB.components(for: .milan).microcode < 115 ? "snp_tcb_too_old" : "", false)
            case 6: r.measurement = differentBytes(r.measurement, &rng); (code, defaultRefuses) = ("snp_measurement_not_allowed", false)
            case 7: r.hostData = differentBytes(r.hostData, &rng); (code, defaultRefuses) = ("snp_host_data_mismatch", false)
            case 8: r.idKeyDigest = differentBytes(r.idKeyDigest, &rng); (code, defaultRefuses) = ("snp_id_key_not_allowed", false)
            case 9: r.authorKeyDigest = differentBytes(r.authorKeyDigest, &rng); (code, defaultRefuses) = ("snp_author_key_not_allowed", false)
            default: r.reportData = differentBytes(r.reportData, &rng); (code, defaultRefuses) = ("snp_report_data_mismatch", false)
            }
            let evidence = SNPEvidence(report: try sim.sign(r), endorsementKey: try sim.vcek.der)
            let strictResult = verifier.verify(evidence, at: SNPFixtures.now, policy: strict)
            XCTAssertEqual(strictResult.codes, code.isEmpty ? [] : [code], "\(seed) #\(i) field \(field)")
            XCTAssertNotNil(strictResult.claims, "\(seed) #\(i): a policy refusal keeps the claims")
            let defaultResult = verifier.verify(evidence, at: SNPFixtures.now)
            XCTAssertEqual(defaultResult.isVerified, !defaultRefuses, "\(seed) #\(i) field \(field): \(defaultResult.codes)")
        }
    }

    /// A policy that refuses nothing an authentic sample has, so only authenticity decides.
    static var permissive: SNPPolicy {
        var p = SNPPolicy()
        p.allowDebug = true
        p.allowMigrationAgent = true
        return p
    }
}
