import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport
import VouchTPMWire

/// The Azure CVM path: the software paravisor's HCL reports (encoded as `AzureHCLReport` parses
/// them, accepted by the offline verifier under the test roots) and the broker's verifier for an
/// HCL report with a vTPM quote — its binding checks (user data, VMPL, the AK that signed the
/// quote, the vTPM EK pin), each refused with its code.
final class AzureCVMTests: XCTestCase {
    static let now = Date.parseRFC3339("2026-01-15T00:00:00Z")!
    static let ak = try! PrivateKey.generateRSA(bits: 2048)
    static let ek = try! PrivateKey.generateRSA(bits: 2048)
    static let otherAK = try! PrivateKey.generateRSA(bits: 2048)
    let binding = Crypto.sha256(Array("a request's binding".utf8))
    let hostKey = try! PrivateKey.generate(.p256)
    var spki: [UInt8] { try! hostKey.publicKey.canonicalSPKIDER }
    var ekSPKI: [UInt8] { try! Self.ek.publicKey.canonicalSPKIDER }

    func cvm(ak: PrivateKey = AzureCVMTests.ak, options: String? = nil) throws -> SimulatedAzureCVM {
        try SimulatedAzureCVM(snp: SNPSim.milan, attestationKey: ak, endorsementKey: try Self.ek.publicKey, optionsPath: options,
                              madeAt: Self.now.addingTimeInterval(-60), clock: ManualClock(Self.now))
    }

    /// The host as registered: its host key, the vTPM EK pinned, the software Milan's ASK.
    var host: TEEHostIdentity {
        TEEHostIdentity(kind: .azureSNPVTPM, hostKey: spki, vtpmEndorsementKey: ekSPKI, endorsementIssuer: SNPSim.milan.ask.subject, simulated: true)
    }

    func trust(simulated: Bool = true) throws -> TEETrust {
        simulated ? TEETrust().trustingSimulation(snp: try SNPSim.store([SNPSim.milan]), tdxRoots: nil) : TEETrust()
    }

    /// A policy constraining SHA-256 PCR 0 to zeros, with an `snp:` section admitting the
    /// paravisor launches `paravisor` (default: the simulated paravisor's) and plain SEV-SNP
    /// guests `guests` (default: the simulated guest's).
    func context(_ identity: TEEHostIdentity?, paravisor: [[UInt8]] = [SimulatedTEEOptions.defaultParavisorMeasurement],
                 guests: [[UInt8]] = [SimulatedTEEOptions.defaultMeasurement], allowAny: Bool = false) -> VerificationContext {
        var policy = Policy(name: "azure", version: 1, pcrBank: .sha256, pcrValues: [0: [[UInt8](repeating: 0, count: 32)]])
        var snp = SNPPolicy()
        snp.paravisorMeasurements = paravisor.enumerated().map { SNPPolicy.Measurement(name: "paravisor-\($0.offset)", value: $0.element) }
        snp.measurements = guests.enumerated().map { SNPPolicy.Measurement(name: "guest-\($0.offset)", value: $0.element) }
        snp.allowAnyMeasurement = allowAny
        policy.snp = snp
        return VerificationContext(hostID: identity?.hostID ?? "", binding: binding, enrolled: EnrolledKeys(tee: identity), policy: policy,
                                   digester: OpenSSLDigester(), platform: .azureSNPVTPM, now: Self.now)
    }

    /// The broker's raw evidence from a guest's fields (`hcl`: another HCL report in their place).
    func raw(_ fields: TEEEvidenceFields, hcl: [UInt8]? = nil, signed: Bool = true) throws -> RawEvidence {
        let q = try XCTUnwrap(fields.vtpmQuote)
        let quote = TPMQuoteEvidence(attest: try Base64.decode(q.attest, field: "attest"), signature: try Base64.decode(q.signature, field: "signature"),
                                     pcrs: try PCRValues(hexMap: q.pcrs, field: "pcrs"), eventLog: nil, modelLog: nil)
        return RawEvidence(device: "azure-snp-vtpm", payload: .azureSNPVTPM(AzureRawEvidence(
            hclReport: try hcl ?? Base64.decode(XCTUnwrap(fields.report), field: "report"), endorsement: try Base64.decode(XCTUnwrap(fields.endorsement), field: "vcek"),
            quote: quote, hostKeySignature: signed ? try hostKey.sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256) : nil)))
    }

    /// The software paravisor's HCL report of `runtimeClaims`, launched as the simulated paravisor.
    func paravisorReport(_ runtimeClaims: [UInt8]) throws -> [UInt8] {
        try SoftwareAzureParavisor(snp: SNPSim.milan).hclReport(runtimeClaims: runtimeClaims) { $0.measurement = SimulatedTEEOptions.defaultParavisorMeasurement }
    }

    func code(_ v: EvidenceVerification) -> ErrorCode? {
        if case let .rejected(violations, _) = v { return violations.first?.code }
        return nil
    }

    // MARK: the software paravisor

    func testEncodedHCLReportsParseBackAndTheOfflineVerifierAcceptsThem() throws {
        let paravisor = SoftwareAzureParavisor(snp: SNPSim.milan)
        let userData = [UInt8](repeating: 0xab, count: 64)
        let claims = try SoftwareAzureParavisor.runtimeClaims(attestationKey: try Self.ak.publicKey, endorsementKey: try Self.ek.publicKey, userData: userData)
        for hash in [AzureHCLReport.HashType.sha256, .sha384, .sha512] {
            let bytes = try paravisor.hclReport(runtimeClaims: claims, hashType: hash)
            XCTAssertEqual(bytes.count, SoftwareAzureParavisor.nvIndexSize, "zero-padded as the NV index is")
            let parsed = try AzureHCLReport(bytes: bytes)
            XCTAssertEqual(parsed.hashType, hash)
            XCTAssertEqual(parsed.runtimeClaims, claims)
            XCTAssertEqual(parsed.reportType, AzureHCLReport.snpReportType)
            let report = try SNPReport(bytes: parsed.hardwareReport)
            XCTAssertEqual(report.vmpl, 0)
            XCTAssertEqual(Array(report.reportData.prefix(hash.digestSize)),
                           hash == .sha256 ? Crypto.sha256(claims) : Crypto.digest(hash == .sha384 ? .sha384 : .sha512, claims))
            // The offline verifier (`vouch evidence verify --kind azure-snp-vtpm`) under the test roots.
            let verifier = AzureSNPVerifier(snp: try SNPSim.verifier([SNPSim.milan]))
            guard case let .verified(verified, _) = verifier.verify(hclReport: bytes, endorsementKey: try SNPSim.milan.vcek.der, at: Self.now, userData: userData) else {
                return XCTFail("\(verifier.verify(hclReport: bytes, endorsementKey: try SNPSim.milan.vcek.der, at: Self.now).codes)")
            }
            XCTAssertEqual(verified.attestationKeySHA256, Hex.encode(Crypto.sha256(try Self.ak.publicKey.spkiDER)))
            XCTAssertEqual(verified.vmConfiguration["secure-boot"], "true")
        }
        // Request-data version 2 (a capability bitmap) and header version 1 read back too.
        let report = try SNPSim.milan.sign(SNPSim.milan.report(reportData: Crypto.sha256(claims) + [UInt8](repeating: 0, count: 32)))
        let v2 = try AzureHCLReport(bytes: SoftwareAzureParavisor.encode(hardwareReport: report, runtimeClaims: claims, version: 1, requestDataVersion: 2))
        XCTAssertEqual([v2.version, v2.runtimeClaims.count == claims.count ? 1 : 0], [1, 1])
        let parsed = try AzureRuntimeClaims(json: claims)
        XCTAssertEqual(parsed.attestationKey?.modulus, try SoftwareAzureParavisor.rsaComponents(Self.ak.publicKey).modulus)
        XCTAssertEqual(parsed.endorsementKey?.exponent, [1, 0, 1])
        XCTAssertEqual(parsed.userData, Hex.encode(userData).uppercased())
    }

    // MARK: the broker's verifier

    func testAnAzureCVMVerifiesWithBothItsSNPAndTPMClaims() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        let fields = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        guard case let .verified(e) = verifier.verify(try raw(fields), accepted: .none, context: context(host)) else {
            return XCTFail("\(verifier.verify(try raw(fields), accepted: .none, context: context(host)))")
        }
        XCTAssertEqual(e.kind, .azureSNPVTPM)
        let claims = e.evidenceClaims
        XCTAssertEqual(claims.tee?.kind, "azure-snp-vtpm")
        XCTAssertEqual(claims.tee?.measurement, Hex.encode(SimulatedTEEOptions.defaultParavisorMeasurement))
        XCTAssertEqual(claims.tee?.measurementName, "paravisor-0", "named from paravisorMeasurements")
        XCTAssertEqual(claims.tee?.warnings, ["snp_revocation_not_checked"])
        XCTAssertEqual(claims.clock?.clock, 60_000, "the vTPM's clock: a minute since it was made")
        XCTAssertEqual(e.record.measurements?["sha256"]?.count, 8, "the vTPM quote's PCRs 0-7")
        // Registration identifies the host by its host key, the vTPM EK pinned.
        let identified = try verifier.identify(try raw(fields), binding: binding, hostKey: spki, at: Self.now).get()
        XCTAssertEqual(identified.identity, host)
        XCTAssertNotEqual(identified.hostID, TEEHostIdentity.hostID(kind: .sevSNP, hostKeySPKI: spki), "never an SEV-SNP host's id")
    }

    func testTheBindingChecksRefuseWithTheirCodes() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        let good = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        func refused(_ evidence: RawEvidence, _ identity: TEEHostIdentity? = nil) -> ErrorCode? {
            code(verifier.verify(evidence, accepted: .none, context: context(identity ?? host)))
        }
        // User data of another request (the quote's qualifying data is this one's).
        let other = try cvm().evidence(binding: Crypto.sha256([1]), pcrSelection: nil).fields
        XCTAssertEqual(refused(try raw(good, hcl: try Base64.decode(XCTUnwrap(other.report), field: "report"))), .snpReportDataMismatch)
        // A report not made at VMPL 0: the paravisor's claims are not vouched for.
        let paravisor = SoftwareAzureParavisor(snp: SNPSim.milan)
        let claims = try SoftwareAzureParavisor.runtimeClaims(attestationKey: try Self.ak.publicKey, endorsementKey: try Self.ek.publicKey,
                                                              userData: EnrollmentBinding.teeReportData(binding: binding))
        XCTAssertNotNil(verified(verifier, try raw(good, hcl: try paravisorReport(claims))), "the same claims at VMPL 0 pass")
        XCTAssertEqual(refused(try raw(good, hcl: try paravisor.hclReport(runtimeClaims: claims) { $0.vmpl = 1 })), .azureVMPLNotZero)
        // The quote signed by another AK than the HCL report names.
        let otherAK = try cvm(ak: Self.otherAK).evidence(binding: binding, pcrSelection: nil).fields
        XCTAssertEqual(refused(try raw(otherAK, hcl: try Base64.decode(XCTUnwrap(good.report), field: "report"))), .quoteSignatureInvalid)
        // Claims that REPORT_DATA does not bind; claims without the vTPM EK.
        var changed = try Base64.decode(XCTUnwrap(good.report), field: "report")
        changed[0x4D4 + 40] ^= 0x01
        XCTAssertEqual(refused(try raw(good, hcl: changed)), .azureRuntimeClaimsMismatch)
        let (n, e) = try SoftwareAzureParavisor.rsaComponents(Self.ak.publicKey)
        let noEK = Array(#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"\#(JWSSigner.base64URL(n))","e":"\#(JWSSigner.base64URL(e))"}],"user-data":"\#(Hex.encode(EnrollmentBinding.teeReportData(binding: binding)))"}"#.utf8)
        XCTAssertEqual(refused(try raw(good, hcl: try paravisor.hclReport(runtimeClaims: noEK))), .azureRuntimeClaimsInvalid)
        // The host: another vTPM than registered, no host-key signature, simulated hosts not allowed.
        var otherVTPM = host
        otherVTPM.vtpmEndorsementKey = try Self.otherAK.publicKey.canonicalSPKIDER
        XCTAssertEqual(refused(try raw(good), otherVTPM), .teeHostMismatch)
        XCTAssertEqual(refused(try raw(good, signed: false)), .teeHostMismatch)
        var snpHost = host
        snpHost.kind = .sevSNP
        XCTAssertEqual(refused(try raw(good), snpHost), .teeHostMismatch, "an SEV-SNP host's registration never admits an Azure CVM's evidence")
        XCTAssertEqual(code(AzureEvidenceVerifier(trust: try trust(simulated: false)).verify(try raw(good), accepted: .none, context: context(host))),
                       .teeSimulationRefused)
    }

    /// A broker that fetches AMD's CRLs checks an Azure CVM's VCEK chain with its own, as an
    /// SEV-SNP host's (check 2a): refused without a current one (`snp_crl_unavailable`), a
    /// revocation in it refuses, a host-sent CRL is checked besides it, and the evidence kept
    /// carries the broker's CRL.
    func testABrokerThatFetchesAMDsCRLsChecksAnAzureCVMsChainWithIt() throws {
        let p = SNPFetchedCRLTests.platform
        var trust = TEETrust()
        trust.snp = SNPTrustStore(products: [.milan: SNPTrustStore.ProductRoots(ark: p.ark, arkPin: Crypto.sha256(try p.ark.der), ask: p.ask, asvk: p.asvk)])
        let cvm = try SimulatedAzureCVM(snp: p, attestationKey: Self.ak, endorsementKey: try Self.ek.publicKey, optionsPath: nil,
                                        madeAt: Self.now.addingTimeInterval(-60), clock: ManualClock(Self.now))
        let fields = try cvm.evidence(binding: binding, pcrSelection: nil).fields
        func crl(revoking: [Certificate] = [], daysAgo: Double = 1) throws -> [UInt8] {
            try p.crl(revoking: revoking, thisUpdate: Self.now.addingTimeInterval(-daysAgo * 86_400), nextUpdate: Self.now.addingTimeInterval(30 * 86_400))
        }
        func identify(_ source: SNPFetchedCRLTests.Source?, sent: [UInt8]? = nil) throws -> Result<TEEIdentification, VouchError> {
            var t = trust
            t.snpEndorsements = source
            guard case var .azureSNPVTPM(azure) = try raw(fields).payload else { throw TestFailure("not Azure evidence") }
            azure.crl = sent
            return AzureEvidenceVerifier(trust: t).identify(RawEvidence(device: "azure-snp-vtpm", payload: .azureSNPVTPM(azure)), binding: binding,
                                                            hostKey: spki, at: Self.now)
        }
        func code(_ r: Result<TEEIdentification, VouchError>) -> ErrorCode? {
            if case let .failure(e) = r { return e.code }
            return nil
        }
        XCTAssertEqual(code(try identify(SNPFetchedCRLTests.Source([:]))), .snpCRLUnavailable)
        XCTAssertEqual(code(try identify(SNPFetchedCRLTests.Source([:]), sent: try crl())), .snpCRLUnavailable)
        XCTAssertEqual(code(try identify(SNPFetchedCRLTests.Source([.vcek: try crl(revoking: [p.ask])]))), .snpCertificateRevoked)
        let brokers = try crl()
        XCTAssertEqual(code(try identify(SNPFetchedCRLTests.Source([.vcek: brokers]), sent: try crl(revoking: [p.ask]))), .snpCertificateRevoked)
        XCTAssertEqual(try identify(SNPFetchedCRLTests.Source([.vcek: brokers]), sent: try crl(daysAgo: 20)).get().summary.evidence.crl, brokers)
        // A broker that fetches nothing takes the host's CRL, or none (revocation then unchecked).
        XCTAssertNoThrow(try identify(nil).get())
    }

    func testStageTwoAppliesTheSNPSectionThenTheQuotesLogs() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        let fields = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        let v = verifier.verify(try raw(fields), accepted: .none, context: context(host, paravisor: [[UInt8](repeating: 0x11, count: 48)]))
        XCTAssertEqual(code(v), .snpMeasurementNotAllowed)
        if case let .rejected(_, record) = v {
            XCTAssertEqual(record?.claims?.tee?.kind, "azure-snp-vtpm", "the refusal is recorded with the SNP summary")
            XCTAssertNotNil(record?.measurements, "and the quote's PCRs")
        }
        // A vTPM clock behind the last accepted one.
        let behind = AcceptedState(clock: ClockState(resetCount: 0, restartCount: 0, clock: 120_000, safe: true))
        XCTAssertEqual(code(verifier.verify(try raw(fields), accepted: behind, context: context(host))), .clockRegressed)
    }

    // MARK: the paravisor's launch

    /// An ordinary SEV-SNP guest at VMPL 0 can request reports with any REPORT_DATA, so it can
    /// write an HCL report of its own (runtime claims naming its own software AK and EK) and quote
    /// with that AK: only the paravisor's pinned launch measurement tells the two apart. A launch
    /// admitted for plain SEV-SNP guests (`measurements`) never admits an Azure CVM, nor does
    /// `allowAnyMeasurement`; a paravisor's launch (`paravisorMeasurements`) never admits a plain
    /// SEV-SNP guest.
    func testOnlyAPinnedParavisorLaunchAdmitsAnAzureCVM() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        var asGuest = SimulatedTEEOptions()
        asGuest.measurement = SimulatedTEEOptions.defaultMeasurement
        let forged = try cvm().evidence(binding: binding, pcrSelection: nil, options: asGuest).fields
        func violation(_ fields: TEEEvidenceFields, _ c: VerificationContext) throws -> PolicyViolation? {
            if case let .rejected(v, _) = verifier.verify(try raw(fields), accepted: .none, context: c) { return v.first }
            return nil
        }
        let listedForGuests = try violation(forged, context(host))
        XCTAssertEqual(listedForGuests?.code, .snpMeasurementNotAllowed, "the plain guests' launch")
        XCTAssertEqual(listedForGuests?.path, "snp.paravisorMeasurements")
        let anyMeasurement = try violation(forged, context(host, paravisor: [], guests: [], allowAny: true))
        XCTAssertEqual(anyMeasurement?.code, .snpMeasurementNotAllowed)
        XCTAssertEqual(anyMeasurement?.path, "snp.paravisorMeasurements")
        XCTAssertEqual(anyMeasurement?.expected, "an Azure CVM needs the paravisor's launch measurement pinned")
        let real = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        XCTAssertEqual(try violation(real, context(host, paravisor: [], allowAny: true))?.code, .snpMeasurementNotAllowed,
                       "allowAnyMeasurement never stands in for the paravisor's pin")
        XCTAssertNil(try violation(real, context(host)))

        // Which policies cover which hosts: an Azure CVM needs `paravisorMeasurements` (and `pcrs`).
        var policy = context(host, paravisor: [], guests: [], allowAny: true).policy
        XCTAssertTrue(policy.covers(.sevSNP))
        XCTAssertFalse(policy.covers(.azureSNPVTPM))
        policy.snp?.paravisorMeasurements = [SNPPolicy.Measurement(name: "hcl", value: SimulatedTEEOptions.defaultParavisorMeasurement)]
        XCTAssertTrue(policy.covers(.azureSNPVTPM))
        policy.pcrValues = [:]
        XCTAssertFalse(policy.covers(.azureSNPVTPM), "no pcrs: confidential VMs only, no vTPM quote judged")

        // A plain SEV-SNP report with the paravisor's launch: judged by `measurements` alone.
        var report = SNPSim.milan.report(reportData: [UInt8](repeating: 0, count: 64))
        report.measurement = SimulatedTEEOptions.defaultParavisorMeasurement
        guard case let .authenticated(plain) = try SNPSim.verifier([SNPSim.milan]).authenticate(
            SNPEvidence(report: try SNPSim.milan.sign(report), endorsementKey: try SNPSim.milan.vcek.der, crl: nil), at: Self.now) else {
            return XCTFail("the plain report does not authenticate")
        }
        let section = try XCTUnwrap(context(host).policy.snp)
        XCTAssertEqual(SNPVerifier.appraise(plain, policy: section).violations.map(\.code), [.snpMeasurementNotAllowed])
        XCTAssertEqual(SNPVerifier.appraise(plain, policy: section, launch: .paravisor).violations.map(\.code), [])
    }

    // MARK: the runtime claims

    /// Runtime claims that REPORT_DATA binds but that are unusable — not JSON, vTPM keys under
    /// 2048 bits, an even exponent or exponent 1 — are refused as signed evidence (403), at A2
    /// (`HCLAkPub`) and A4 (`HCLEkPub`); never a bad request.
    func testUnusableRuntimeClaimsAreRefusedAsSignedEvidence() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        let good = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        let userData = Hex.encode(EnrollmentBinding.teeReportData(binding: binding))
        let ak = try SoftwareAzureParavisor.rsaComponents(Self.ak.publicKey), ek = try SoftwareAzureParavisor.rsaComponents(Self.ek.publicKey)
        let short = try SoftwareAzureParavisor.rsaComponents(PrivateKey.generateRSA(bits: 1024).publicKey)
        typealias Key = (modulus: [UInt8], exponent: [UInt8])
        func claims(ak: Key, ek: Key) -> [UInt8] {
            func jwk(_ kid: String, _ k: Key) -> String {
                #"{"kid":"\#(kid)","kty":"RSA","n":"\#(JWSSigner.base64URL(k.modulus))","e":"\#(JWSSigner.base64URL(k.exponent))"}"#
            }
            return Array(#"{"keys":[\#(jwk("HCLAkPub", ak)),\#(jwk("HCLEkPub", ek))],"user-data":"\#(userData)"}"#.utf8)
        }
        func refusal(_ runtimeClaims: [UInt8]) throws -> PolicyViolation? {
            let evidence = try raw(good, hcl: try paravisorReport(runtimeClaims))
            if case let .rejected(v, _) = verifier.verify(evidence, accepted: .none, context: context(host)) { return v.first }
            return nil
        }
        XCTAssertNil(try refusal(claims(ak: ak, ek: ek)), "the guest's own keys, written by hand")
        XCTAssertNil(try refusal(claims(ak: ([0, 0] + ak.modulus, [0] + ak.exponent), ek: ek)), "leading zero bytes count for nothing")
        let cases: [(String, [UInt8])] = [
            ("not JSON", Array("HCLAkPub".utf8)),
            ("a 1024-bit AK", claims(ak: short, ek: ek)),
            ("AK exponent 1", claims(ak: (ak.modulus, [1]), ek: ek)),
            ("an even AK exponent", claims(ak: (ak.modulus, [1, 0, 0]), ek: ek)),
            ("a 1024-bit EK", claims(ak: ak, ek: short)),
            ("EK exponent 1", claims(ak: ak, ek: (ek.modulus, [0, 1]))),
        ]
        for (what, runtimeClaims) in cases {
            let v = try refusal(runtimeClaims)
            XCTAssertEqual(v?.code, .azureRuntimeClaimsInvalid, what)
            XCTAssertEqual(v?.code.status, 403, what)
        }
        // Bytes that do not parse as an HCL report, before any signature check, stay a bad request.
        XCTAssertEqual(code(verifier.verify(try raw(good, hcl: Array("HCLA".utf8)), accepted: .none, context: context(host))), .teeEvidenceMalformed)
    }

    // MARK: the evidence digest

    /// The EAR's evidence digest covers what the HCL report's signature and REPORT_DATA cover (its
    /// SEV-SNP report, then its runtime claims): a host that changes the unsigned header or the
    /// NV index's padding after report_size gets the same digest. The stored bytes stay as sent.
    func testTheEvidenceDigestCoversOnlyTheSignedAndBoundParts() throws {
        let verifier = AzureEvidenceVerifier(trust: try trust())
        let fields = try cvm().evidence(binding: binding, pcrSelection: nil).fields
        let hcl = try Base64.decode(XCTUnwrap(fields.report), field: "report")
        let parsed = try AzureHCLReport(bytes: hcl)
        var varied = hcl
        varied[0x10] ^= 0xff
        varied[varied.count - 1] ^= 0xff
        func summary(_ bytes: [UInt8]) throws -> VerifiedTEE {
            try verifier.identify(try raw(fields, hcl: bytes), binding: binding, hostKey: spki, at: Self.now).get().summary
        }
        let expected = Crypto.sha256(parsed.hardwareReport + parsed.runtimeClaims)
        XCTAssertEqual(try summary(hcl).evidenceDigest, expected)
        XCTAssertEqual(try summary(varied).evidenceDigest, expected, "the status field and the padding are signed by nothing")
        XCTAssertNotEqual(Crypto.sha256(varied), expected)
        XCTAssertEqual(try summary(varied).evidence.report, varied)
        guard case let .verified(e) = verifier.verify(try raw(fields, hcl: varied), accepted: .none, context: context(host)),
              case let .azureSNPVTPM(_, _, _, _, verifiedSummary) = e.claims else {
            return XCTFail("the varied report does not verify")
        }
        XCTAssertEqual(verifiedSummary.evidenceDigest, expected)
    }

    func verified(_ verifier: AzureEvidenceVerifier, _ evidence: RawEvidence) -> VerifiedEvidence? {
        if case let .verified(e) = verifier.verify(evidence, accepted: .none, context: context(host)) { return e }
        return nil
    }
}
