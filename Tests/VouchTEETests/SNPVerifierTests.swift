import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire
import VouchTestSupport

/// SNPVerifier on the corpus's real reports and certificates, at the manifest's verify_now,
/// pinned to AMD's roots; and the manifest's negative recipes.
final class SNPVerifierTests: XCTestCase {
    func testEveryManifestSampleGivesItsExpectedResult() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        for sample in try SNPFixtures.samples() {
            let result = verifier.verify(SNPEvidence(report: sample.report, endorsementKey: sample.signer), at: SNPFixtures.now)
            guard case .authenticated = verifier.authenticate(SNPEvidence(report: sample.report, endorsementKey: sample.signer), at: SNPFixtures.now) else {
                XCTFail("\(sample.dir): not authentic: \(result.violations)")
                continue
            }
            if sample.manifest["policy_debug_bit19"] as? Bool == true {
                // Authentic, but the default policy refuses a debuggable guest, with the claims.
                XCTAssertEqual(result.codes, ["snp_debug_enabled"], sample.dir)
                XCTAssertEqual(result.violations.first?.path, "snp.policy.debug")
                XCTAssertEqual(result.claims?.debug, true)
                var allow = SNPPolicy()
                allow.allowDebug = true
                XCTAssertTrue(verifier.verify(SNPEvidence(report: sample.report, endorsementKey: sample.signer), at: SNPFixtures.now, policy: allow).isVerified)
            } else {
                guard case let .verified(claims, warnings) = result else { XCTFail("\(sample.dir): \(result.violations)"); continue }
                XCTAssertEqual(warnings.map(\.code), ["snp_revocation_not_checked"])
                XCTAssertEqual(claims.signer, sample.signerType.lowercased(), sample.dir)
                XCTAssertEqual(claims.product.rawValue, (sample.manifest["product"] as! String).split(separator: "-").first.map(String.init))
                let tcb = sample.manifest["reported_tcb"] as! [String: Int]
                XCTAssertEqual([claims.tcb.reported.bootloader, claims.tcb.reported.tee, claims.tcb.reported.snp, claims.tcb.reported.microcode].map(Int.init),
                               [tcb["bl"]!, tcb["tee"]!, tcb["snp"]!, tcb["ucode"]!], sample.dir)
            }
        }
    }

    func testClaimsOfTheVLEKAndGenoaSamples() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let vlek = try SNPFixtures.sample("milan-vlek-trustee")
        guard case let .verified(c, _) = verifier.verify(SNPEvidence(report: vlek.report, endorsementKey: vlek.signer), at: SNPFixtures.now) else {
            return XCTFail("VLEK sample refused")
        }
        XCTAssertEqual(c.signer, "vlek")
        XCTAssertEqual(c.vmpl, 1)
        XCTAssertEqual(c.version, 3)
        XCTAssertEqual(c.chipId, String(repeating: "0", count: 128))
        XCTAssertEqual(c.endorsement.cspID, "CN=cc-us-east-2.amazonaws.com")
        XCTAssertEqual(c.cpuid, SNPCPUID(family: 0x19, model: 1, stepping: 1))

        let genoa = try SNPFixtures.sample("genoa-azure-cvm")
        guard case let .verified(g, _) = verifier.verify(SNPEvidence(report: genoa.report, endorsementKey: genoa.signer), at: SNPFixtures.now) else {
            return XCTFail("Genoa sample refused")
        }
        XCTAssertEqual(g.product, .genoa)
        XCTAssertEqual(g.endorsement.productName, "Genoa")
        XCTAssertEqual(g.tcb.reported.raw, "541700000000000a")

        // The JSON the CLI prints: stable names, hex strings.
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(g)) as! [String: Any]
        for key in ["version", "product", "signer", "guestSVN", "policy", "debug", "vmpl", "familyId", "imageId", "platformInfo", "measurement",
                    "reportData", "hostData", "idKeyDigest", "authorKeyDigest", "reportId", "reportIdMA", "chipId", "tcb", "cpuid",
                    "currentFirmware", "committedFirmware", "endorsement", "authorKeyEnabled", "chipIdMasked"] {
            XCTAssertNotNil(json[key], key)
        }
        XCTAssertEqual(json["product"] as? String, "Genoa")
        XCTAssertEqual(json["signer"] as? String, "vcek")
        let tcb = json["tcb"] as! [String: [String: Any]]
        XCTAssertEqual(Set(tcb.keys), ["current", "reported", "committed", "launch"])
        XCTAssertEqual(tcb["reported"]?["microcode"] as? Int, 84)
        XCTAssertEqual((json["measurement"] as? String)?.count, 96)
        let endorsement = json["endorsement"] as! [String: Any]
        XCTAssertEqual(endorsement["notBefore"] as? String, "2025-01-24T02:21:48Z")
        XCTAssertEqual(endorsement["notAfter"] as? String, "2032-01-24T02:21:48Z")
    }

    func testTurinChainAndTheEditedVCEKs() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        guard case let .authenticated(turin) = verifier.authenticateEndorsement(try SNPFixtures.bytes("turin-chain-only/vcek.der"), signer: .vcek,
                                                                                at: SNPFixtures.now) else {
            return XCTFail("Turin VCEK chain refused")
        }
        XCTAssertEqual(turin.product, .turin)
        XCTAssertEqual(turin.extensions.hwID?.count, 8)
        for name in ["vcek-modified-hwid-raw.der", "vcek-modified-hwid-octetstring.der"] {
            let bytes = try SNPFixtures.bytes("negative/\(name)")
            XCTAssertNoThrow(try Certificate(der: bytes), name)
            guard case let .refused(v) = verifier.authenticateEndorsement(bytes, signer: .vcek, at: SNPFixtures.now) else { XCTFail(name); continue }
            XCTAssertEqual(v.code, .snpEndorsementUntrusted, name)
            XCTAssertEqual(v.path, "snp.chain.vcek.signature", name)
        }
        // A VCEK is not accepted where a VLEK is named, nor the reverse.
        guard case let .refused(v) = verifier.authenticateEndorsement(try SNPFixtures.bytes("milan-virtee/vcek.der"), signer: .vlek, at: SNPFixtures.now) else {
            return XCTFail()
        }
        XCTAssertEqual(v.code, .snpEndorsementUntrusted)
    }

    func testFlippingAnySignedByteOfAReportIsRefused() throws {
        // The recipe: every byte of [0, 0x2A0), each refused; bytes the verifier compares with
        // the VCEK first get the binding's code, the rest the signature's.
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        for dir in ["milan-gosevguest", "milan-vlek-trustee"] {
            let sample = try SNPFixtures.sample(dir)
            let original = try SNPReport(bytes: sample.report)
            for offset in 0..<SNPReport.signedLength {
                var bytes = sample.report
                bytes[offset] ^= 0x01
                let result = verifier.verify(SNPEvidence(report: bytes, endorsementKey: sample.signer), at: SNPFixtures.now)
                XCTAssertEqual(result.violations.count, 1, "\(dir) 0x\(String(offset, radix: 16))")
                XCTAssertNil(result.claims, "\(dir) 0x\(String(offset, radix: 16)): an authenticity failure returns no claims")
                let allowed = SNPMutation.allowedCodes(offset: offset, original: original)
                XCTAssertTrue(allowed.contains(result.codes.first ?? "verified"),
                              "\(dir) 0x\(String(offset, radix: 16)): \(result.codes) not in \(allowed.sorted())")
            }
        }
    }

    func testTheVLEKWithTheASKChainIsRefused() throws {
        let vlek = try SNPFixtures.sample("milan-vlek-trustee")
        let verifier = SNPVerifier(trust: try SNPFixtures.store(files: ["ask_ark_milan_vcek.pem"]))
        let result = verifier.verify(SNPEvidence(report: vlek.report, endorsementKey: vlek.signer), at: SNPFixtures.now)
        XCTAssertEqual(result.codes, ["snp_endorsement_untrusted"])
        XCTAssertNil(result.claims)
    }

    func testTheVLEKIsExpiredIn2026() throws {
        let vlek = try SNPFixtures.sample("milan-vlek-trustee")
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let result = verifier.verify(SNPEvidence(report: vlek.report, endorsementKey: vlek.signer), at: Date(timeIntervalSince1970: 1_767_225_600))
        XCTAssertEqual(result.codes, ["snp_certificate_expired"])
        XCTAssertEqual(result.violations.first?.path, "snp.chain.vlek")
        // Before it was issued, too.
        let early = verifier.verify(SNPEvidence(report: vlek.report, endorsementKey: vlek.signer), at: Date(timeIntervalSince1970: 1_700_000_000))
        XCTAssertEqual(early.codes, ["snp_certificate_expired"])
    }

    func testAReportWithAnotherChipsVCEKIsRefused() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let gosev = try SNPFixtures.sample("milan-gosevguest"), virtee = try SNPFixtures.sample("milan-virtee")
        let result = verifier.verify(SNPEvidence(report: virtee.report, endorsementKey: gosev.signer), at: SNPFixtures.now)
        XCTAssertEqual(result.codes, ["snp_hwid_mismatch"])
        // A Genoa report with a Milan VCEK: the chain is Milan's, the CPUID Genoa's.
        let genoa = try SNPFixtures.sample("genoa-azure-cvm")
        XCTAssertEqual(verifier.verify(SNPEvidence(report: genoa.report, endorsementKey: virtee.signer), at: SNPFixtures.now).codes, ["snp_product_mismatch"])
    }

    func testRootsArePinned() throws {
        let amd = try SNPFixtures.amdStore()
        XCTAssertEqual(Set(amd.products.keys), Set(SNPProduct.allCases))
        for (product, roots) in amd.products {
            XCTAssertEqual(Hex.encode(Crypto.sha256(try roots.ark.der)), SNPTrustStore.amdARKSHA256[product])
            XCTAssertNotNil(roots.ask)
            XCTAssertNotNil(roots.asvk)
        }
        let sample = try SNPFixtures.sample("milan-virtee")
        let evidence = SNPEvidence(report: sample.report, endorsementKey: sample.signer)
        let milan = amd.products[.milan]!, genoa = amd.products[.genoa]!

        // Another pin for the same ARK.
        var wrongPin = milan.arkPin
        wrongPin[0] ^= 1
        let pinned = SNPVerifier(trust: SNPTrustStore(products: [.milan: .init(ark: milan.ark, arkPin: wrongPin, ask: milan.ask, asvk: nil)]))
        XCTAssertEqual(pinned.verify(evidence, at: SNPFixtures.now).codes, ["snp_root_untrusted"])
        XCTAssertEqual(pinned.verify(evidence, at: SNPFixtures.now).violations.first?.path, "snp.chain.ark")
        // Milan's ASK under Genoa's ARK.
        let swapped = SNPVerifier(trust: SNPTrustStore(products: [.milan: .init(ark: genoa.ark, arkPin: genoa.arkPin, ask: milan.ask, asvk: nil)]))
        XCTAssertEqual(swapped.verify(evidence, at: SNPFixtures.now).codes, ["snp_root_untrusted"])
        XCTAssertEqual(swapped.verify(evidence, at: SNPFixtures.now).violations.first?.path, "snp.chain.ask")
        // A store without the product line.
        let other = SNPVerifier(trust: SNPTrustStore(products: [.genoa: genoa]))
        XCTAssertEqual(other.verify(evidence, at: SNPFixtures.now).codes, ["snp_endorsement_untrusted"])
    }

    func testTheRepositoryRootsAreTheCorpusRoots() throws {
        let repoRoots = fixturesRoot.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("certs/amd")
        let repo = try SNPTrustStore(directory: repoRoots, pinning: .amd)
        let corpus = try SNPFixtures.amdStore()
        for product in SNPProduct.allCases {
            XCTAssertEqual(try repo.products[product]?.ark.der, try corpus.products[product]?.ark.der)
            XCTAssertEqual(try repo.products[product]?.ask?.der, try corpus.products[product]?.ask?.der)
            XCTAssertEqual(try repo.products[product]?.asvk?.der, try corpus.products[product]?.asvk?.der)
        }
    }

    func testMalformedEvidenceIsRefusedWithoutClaims() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let sample = try SNPFixtures.sample("milan-trustee")
        let short = verifier.verify(SNPEvidence(report: Array(sample.report.prefix(1000)), endorsementKey: sample.signer), at: SNPFixtures.now)
        XCTAssertEqual(short.codes, ["tee_evidence_malformed"])
        XCTAssertEqual(short.violations.first?.path, "snp.report.report")
        XCTAssertNil(short.claims)
        let noCert = verifier.verify(SNPEvidence(report: sample.report, endorsementKey: [0x30, 0x03, 0x02, 0x01, 0x00]), at: SNPFixtures.now)
        XCTAssertEqual(noCert.codes, ["tee_evidence_malformed"])
        // PEM endorsement (the Genoa sample's) is read too.
        let genoa = try SNPFixtures.sample("genoa-azure-cvm")
        XCTAssertTrue(genoa.signer.starts(with: Array("-----BEGIN".utf8)))
        // Unsigned, and another algorithm.
        var unsigned = try SNPReport(bytes: sample.report)
        unsigned.signingKey = .none
        XCTAssertEqual(verifier.verify(SNPEvidence(report: try unsigned.serialized(), endorsementKey: sample.signer), at: SNPFixtures.now).codes,
                       ["snp_report_signature_invalid"])
        var bytes = sample.report
        bytes[0x34] = 2
        XCTAssertEqual(verifier.verify(SNPEvidence(report: bytes, endorsementKey: sample.signer), at: SNPFixtures.now).codes, ["snp_report_signature_invalid"])
    }
}
