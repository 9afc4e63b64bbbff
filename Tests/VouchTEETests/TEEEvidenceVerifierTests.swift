import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// The CPU TEE evidence verifiers as the broker runs them (`EvidenceVerifier`: stage 1
/// authenticity, binding and host identity; stage 2 the policy's `snp:`/`tdx:` section), with the
/// software TEE; and the directory-backed TDX collateral source.
final class TEEEvidenceVerifierTests: XCTestCase {
    static let now = Date.parseRFC3339("2026-01-15T00:00:00Z")!
    static let issue = Date.parseRFC3339("2026-01-10T00:00:00Z")!
    static let next = Date.parseRFC3339("2026-02-09T00:00:00Z")!
    static let tdx = try! SoftwareTDX(notBefore: Date.parseRFC3339("2025-01-01T00:00:00Z")!, notAfter: Date.parseRFC3339("2030-01-01T00:00:00Z")!)
    static let collateral: TDXCollateral = {
        let tcbDate = Date.parseRFC3339("2025-11-12T00:00:00Z")!
        return try! tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                   qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                   crlThisUpdate: issue, crlNextUpdate: next)
    }()
    let binding = Crypto.sha256(Array("a request's binding".utf8))
    let hostKey = try! PrivateKey.generate(.p256)
    var spki: [UInt8] { try! hostKey.publicKey.canonicalSPKIDER }
    /// This host key registered as an SEV-SNP host with a VCEK (its chip pinned), with a VLEK, as a TDX host.
    var vcekHost: TEEHostIdentity { snpHost(spki, chip: SNPSim.milan.chipID) }
    var vlekHost: TEEHostIdentity { TEEHostIdentity(kind: .sevSNP, hostKey: spki, endorsementIssuer: SNPSim.milan.asvk.subject, simulated: true) }
    var tdxHost: TEEHostIdentity { TEEHostIdentity(kind: .tdx, hostKey: spki, endorsementIssuer: Self.tdx.pckCA.certificate.subject, simulated: true) }
    /// An SEV-SNP host registered with a VCEK-signed report of the software Milan.
    func snpHost(_ key: [UInt8], chip: [UInt8]) -> TEEHostIdentity {
        TEEHostIdentity(kind: .sevSNP, hostKey: key, chipID: chip, endorsementIssuer: SNPSim.milan.ask.subject, simulated: true)
    }

    func trust(collateral: Bool = true) throws -> TEETrust {
        TEETrust(tdxCollateral: TDXCollateralSet(collateral ? [Hex.encode(Self.tdx.platform.fmspc): Self.collateral] : [:]))
            .trustingSimulation(snp: try SNPSim.store([SNPSim.milan]), tdxRoots: Self.tdx.roots)
    }

    /// The policy has both sections at their defaults, except that they admit any measurement
    /// (`edit` changes that).
    func context(_ identity: TEEHostIdentity?, platform: EvidenceKind, binding: [UInt8]? = nil, policy edit: (inout Policy) -> Void = { _ in }) -> VerificationContext {
        var policy = Policy(name: "tee", version: 1, pcrBank: .sha256, pcrValues: [:])
        policy.snp = SNPPolicy()
        policy.snp?.allowAnyMeasurement = true
        policy.tdx = TDXPolicy()
        policy.tdx?.allowAnyMeasurement = true
        edit(&policy)
        return VerificationContext(hostID: identity?.hostID ?? "", binding: binding ?? self.binding, enrolled: EnrolledKeys(tee: identity), policy: policy,
                                   digester: OpenSSLDigester(), platform: platform, now: Self.now)
    }

    func snpEvidence(signer: SNPSigningKey = .vcek, binding: [UInt8]? = nil, table: Bool = false, debug: Bool = false, signed: Bool = true) throws -> RawEvidence {
        let snp = SNPSim.milan
        var report = snp.report(signer: signer, reportData: EnrollmentBinding.teeReportData(binding: binding ?? self.binding))
        if debug { report.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit, SNPGuestPolicy.debugBit]) }
        let cert = try (signer == .vlek ? snp.vlek : snp.vcek).der
        let endorsement: SNPRawEvidence.Endorsement = table
            ? .certificateTable(SNPCertificateTable(entries: [.init(guid: (signer == .vlek ? SNPCertificateTable.Kind.vlek : .vcek).rawValue, der: cert),
                                                              .init(guid: SNPCertificateTable.Kind.ask.rawValue, der: try snp.ask.der)]).bytes)
            : .certificate(cert)
        let signature = signed ? try hostKey.sign(TEEHostIdentity.signedMessage(binding: self.binding), hash: .sha256) : nil
        return RawEvidence(device: "sev-snp", payload: .sevSNP(SNPRawEvidence(report: try snp.sign(report), endorsement: endorsement, hostKeySignature: signature)))
    }

    func tdxEvidence(binding: [UInt8]? = nil, signed: Bool = true, debug: Bool = false) throws -> RawEvidence {
        let body = SoftwareTDX.body(tdAttributes: debug ? [1, 0, 0, 0x10, 0, 0, 0, 0] : [0, 0, 0, 0x10, 0, 0, 0, 0],
                                    reportData: EnrollmentBinding.teeReportData(binding: binding ?? self.binding))
        let signature = signed ? try hostKey.sign(TEEHostIdentity.signedMessage(binding: self.binding), hash: .sha256) : nil
        return RawEvidence(device: "tdx", payload: .tdx(TDXRawEvidence(quote: try Self.tdx.quote(body), hostKeySignature: signature)))
    }

    func verified(_ v: EvidenceVerification, file: StaticString = #filePath, line: UInt = #line) -> VerifiedEvidence? {
        switch v {
        case let .verified(e): return e
        case let .rejected(violations, _): XCTFail("refused: \(violations)", file: file, line: line); return nil
        }
    }

    func refusal(_ v: EvidenceVerification) -> (code: ErrorCode?, record: EvidenceRecord?) {
        if case let .rejected(violations, record) = v { return (violations.first?.code, record) }
        return (nil, nil)
    }

    // MARK: SEV-SNP

    func testSNPEvidenceVerifiesForItsHostKeyAndChipWithTheCertificateOrTheTable() throws {
        let verifier = SNPEvidenceVerifier(trust: try trust())
        let chip = vcekHost
        for table in [false, true] {
            let e = try XCTUnwrap(verified(verifier.verify(try snpEvidence(table: table), accepted: .none, context: context(chip, platform: .sevSNP))))
            XCTAssertEqual(e.kind, .sevSNP)
            let tee = try XCTUnwrap(e.record.claims?.tee)
            XCTAssertEqual([tee.kind, tee.signer, tee.platform], ["sev-snp", "vcek", "Milan"])
            XCTAssertEqual(tee.warnings, ["snp_revocation_not_checked"])
            XCTAssertTrue(tee.simulated)
            XCTAssertEqual(e.record.measurementDigest?.count, 64)
        }
    }

    func testSNPStageOneRefusesAnotherBindingChipOrUnsignedHostKey() throws {
        let verifier = SNPEvidenceVerifier(trust: try trust())
        let chip = vcekHost
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(binding: Crypto.sha256([1])), accepted: .none, context: context(chip, platform: .sevSNP))).code,
                       .snpReportDataMismatch)
        // Every SEV-SNP host signs with its host key, a VCEK host too: its chip is no proof of
        // which guest on it made the report.
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signed: false), accepted: .none, context: context(chip, platform: .sevSNP))).code,
                       .teeHostMismatch)
        let other = try PrivateKey.generate(.p256).publicKey.canonicalSPKIDER
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(), accepted: .none,
                                               context: context(snpHost(other, chip: SNPSim.milan.chipID), platform: .sevSNP))).code,
                       .teeHostMismatch, "another guest on the registered chip")
        // The chip pinned at registration: another chip, or a VLEK-signed report, is refused.
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(), accepted: .none,
                                               context: context(snpHost(spki, chip: [UInt8](repeating: 7, count: 64)), platform: .sevSNP))).code,
                       .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signer: .vlek), accepted: .none, context: context(chip, platform: .sevSNP))).code, .teeHostMismatch)
        // A host registered without a chip (VLEK): its host key's signature.
        XCTAssertNotNil(verified(verifier.verify(try snpEvidence(signer: .vlek), accepted: .none, context: context(vlekHost, platform: .sevSNP))))
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signer: .vlek), accepted: .none, context: context(TEEHostIdentity(kind: .sevSNP, hostKey: other, endorsementIssuer: SNPSim.milan.asvk.subject, simulated: true), platform: .sevSNP))).code,
                       .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signer: .vlek, signed: false), accepted: .none, context: context(vlekHost, platform: .sevSNP))).code,
                       .teeHostMismatch)
        // The registered endorsement issuer and simulated flag.
        var otherIssuer = vcekHost, notSimulated = vcekHost
        otherIssuer.endorsementIssuer = SNPSim.milan.asvk.subject
        notSimulated.simulated = false
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(), accepted: .none, context: context(otherIssuer, platform: .sevSNP))).code, .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(), accepted: .none, context: context(notSimulated, platform: .sevSNP))).code, .teeHostMismatch)
        // Not an SEV-SNP host.
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signer: .vlek), accepted: .none, context: context(tdxHost, platform: .sevSNP))).code, .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(signer: .vlek), accepted: .none, context: context(nil, platform: .sevSNP))).code, .teeHostMismatch)
    }

    func testSNPStageTwoAppliesThePolicySectionOrItsDefaults() throws {
        let verifier = SNPEvidenceVerifier(trust: try trust())
        let chip = vcekHost
        let (code, record) = refusal(verifier.verify(try snpEvidence(debug: true), accepted: .none, context: context(chip, platform: .sevSNP)))
        XCTAssertEqual(code, .snpDebugEnabled, "the section's defaults refuse a debuggable guest")
        XCTAssertEqual(record?.claims?.tee?.debug, true)
        let measurement = try XCTUnwrap(SNPReport(bytes: SNPSim.milan.sign(SNPSim.milan.report())).measurement)
        let allowOther = context(chip, platform: .sevSNP) { p in
            var snp = SNPPolicy()
            snp.measurements = [SNPPolicy.Measurement(name: "other", value: [UInt8](repeating: 9, count: 48))]
            snp.reportData = [UInt8](repeating: 0, count: 64)   // a file's REPORT_DATA never overrides the request's binding
            p.snp = snp
        }
        XCTAssertEqual(refusal(verifier.verify(try snpEvidence(), accepted: .none, context: allowOther)).code, .snpMeasurementNotAllowed)
        let allowIt = context(chip, platform: .sevSNP) { p in
            var snp = SNPPolicy()
            snp.measurements = [SNPPolicy.Measurement(name: "zeros", value: measurement)]
            snp.reportData = [UInt8](repeating: 0, count: 64)
            p.snp = snp
        }
        XCTAssertEqual(verified(verifier.verify(try snpEvidence(), accepted: .none, context: allowIt))?.record.claims?.tee?.measurementName, "zeros")
        // The broker requires an allowlist: a section without one (or no section) admits nothing.
        for edit in [{ (p: inout Policy) in p.snp = SNPPolicy() }, { (p: inout Policy) in p.snp = nil }] {
            guard case let .rejected(violations, _) = verifier.verify(try snpEvidence(), accepted: .none, context: context(chip, platform: .sevSNP, policy: edit)) else {
                return XCTFail("admitted without an allowlist")
            }
            XCTAssertEqual(violations.map(\.code), [.snpMeasurementNotAllowed])
            XCTAssertEqual(violations.first?.expected, "an allowlist in the policy")
        }
    }

    func testSoftwareTEEEvidenceIsRefusedUnderThePinnedRootsAlone() throws {
        let snp = SNPEvidenceVerifier(trust: TEETrust()), tdx = TDXEvidenceVerifier(trust: TEETrust())
        XCTAssertEqual(refusal(snp.verify(try snpEvidence(), accepted: .none, context: context(vcekHost, platform: .sevSNP))).code,
                       .teeSimulationRefused)
        XCTAssertEqual(refusal(tdx.verify(try tdxEvidence(), accepted: .none, context: context(tdxHost, platform: .tdx))).code, .teeSimulationRefused)
        XCTAssertEqual(TEETrust.simulationOrganization, TEESimulation.organization)
        XCTAssertFalse(TEETrust().trustsSimulation)
        XCTAssertFalse(try trust().pinnedOnly.trustsSimulation)
    }

    // MARK: TDX

    func testTDXEvidenceVerifiesWithCollateralForItsHostKey() throws {
        let verifier = TDXEvidenceVerifier(trust: try trust())
        let e = try XCTUnwrap(verified(verifier.verify(try tdxEvidence(), accepted: .none, context: context(tdxHost, platform: .tdx))))
        let tee = try XCTUnwrap(e.record.claims?.tee)
        XCTAssertEqual([tee.kind, tee.tcbStatus, tee.signer], ["tdx", "UpToDate", "pck"])
        XCTAssertEqual(tee.platform, Hex.encode(Self.tdx.platform.fmspc))
        // Stage 1: binding, host key, identity kind.
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(binding: Crypto.sha256([2])), accepted: .none, context: context(tdxHost, platform: .tdx))).code,
                       .tdxReportDataMismatch)
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(signed: false), accepted: .none, context: context(tdxHost, platform: .tdx))).code,
                       .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(), accepted: .none, context: context(vlekHost, platform: .tdx))).code,
                       .teeHostMismatch, "an SEV-SNP host's key does not make a TDX host")
        var otherIssuer = tdxHost, notSimulated = tdxHost
        otherIssuer.endorsementIssuer = "CN=Another PCK CA"
        notSimulated.simulated = false
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(), accepted: .none, context: context(otherIssuer, platform: .tdx))).code, .teeHostMismatch)
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(), accepted: .none, context: context(notSimulated, platform: .tdx))).code, .teeHostMismatch)
        // Stage 2: the policy's defaults.
        XCTAssertEqual(refusal(verifier.verify(try tdxEvidence(debug: true), accepted: .none, context: context(tdxHost, platform: .tdx))).code,
                       .tdxDebugRefused)
        // The broker requires an MRTD allowlist: a section without one (or no section) admits nothing.
        for edit in [{ (p: inout Policy) in p.tdx = TDXPolicy() }, { (p: inout Policy) in p.tdx = nil }] {
            guard case let .rejected(violations, _) = verifier.verify(try tdxEvidence(), accepted: .none, context: context(tdxHost, platform: .tdx, policy: edit)) else {
                return XCTFail("admitted without an allowlist")
            }
            XCTAssertEqual(violations.map(\.code), [.tdxMRTDNotAllowed])
            XCTAssertEqual(violations.first?.expected, "an allowlist in the policy")
        }
    }

    func testTDXWithoutCollateralIsAnUnknownTCBTheDefaultsRefuse() throws {
        let verifier = TDXEvidenceVerifier(trust: try trust(collateral: false))
        let (code, record) = refusal(verifier.verify(try tdxEvidence(), accepted: .none, context: context(tdxHost, platform: .tdx)))
        XCTAssertEqual(code, .tdxTCBUnknown)
        XCTAssertEqual(record?.claims?.tee?.tcbStatus, "Unknown", "authentic: the refusal carries the claims")
        let allowing = context(tdxHost, platform: .tdx) { p in
            p.tdx?.allowUnknownTCB = true
        }
        XCTAssertEqual(verified(verifier.verify(try tdxEvidence(), accepted: .none, context: allowing))?.record.claims?.tee?.warnings, ["tdx_tcb_unknown"])
    }

    func testIdentifyGivesTheHostKeyAndForAVCEKTheChip() throws {
        let t = try trust()
        let snp = SNPEvidenceVerifier(trust: t), tdx = TDXEvidenceVerifier(trust: t)
        let vcek = try snp.identify(try snpEvidence(), binding: binding, hostKey: spki, at: Self.now).get()
        XCTAssertEqual(vcek.identity, vcekHost)
        XCTAssertEqual(vcek.hostID, TEEHostIdentity.hostID(kind: .sevSNP, hostKeySPKI: spki))
        XCTAssertTrue(vcek.simulated)
        XCTAssertEqual(vcek.endorsementIssuer, SNPSim.milan.ask.subject)
        XCTAssertEqual(try snp.identify(try snpEvidence(signer: .vlek), binding: binding, hostKey: spki, at: Self.now).get().identity, vlekHost)
        let td = try tdx.identify(try tdxEvidence(), binding: binding, hostKey: spki, at: Self.now).get()
        XCTAssertEqual(td.identity, tdxHost)
        XCTAssertEqual(td.hostID.count, 32)
        XCTAssertEqual(td.endorsementIssuer, Self.tdx.pckCA.certificate.subject)
        XCTAssertThrowsError(try tdx.identify(try tdxEvidence(), binding: Crypto.sha256([3]), hostKey: spki, at: Self.now).get()) { e in
            XCTAssertEqual((e as? VouchError)?.code, .tdxReportDataMismatch)
        }
    }

    func testHostKeysAreECP256OrP384InCanonicalForm() throws {
        let p384 = try PrivateKey.generate(.p384).publicKey
        XCTAssertEqual(try TEEHostIdentity.checkedHostKey(try p384.spkiDER).type, "ec-p384")
        XCTAssertThrowsError(try TEEHostIdentity.checkedHostKey(try PrivateKey.generateRSA(bits: 2048).publicKey.spkiDER)) { e in
            XCTAssertEqual((e as? VouchError)?.code, .teeHostKeyInvalid)
        }
        XCTAssertThrowsError(try TEEHostIdentity.checkedHostKey([0x30, 0x00]))
        XCTAssertNotEqual(TEEHostIdentity.hostID(kind: .sevSNP, hostKeySPKI: spki), TEEHostIdentity.hostID(kind: .tdx, hostKeySPKI: spki),
                          "the host id names the kind")
        // The documented derivation: SHA-256("vouch tee host-key v1" ‖ 0 ‖ kind ‖ 0 ‖ SPKI), first 16 bytes.
        XCTAssertEqual(TEEHostIdentity.hostID(kind: .tdx, hostKeySPKI: spki),
                       Hex.encode(Crypto.sha256(Array("vouch tee host-key v1\u{0}tdx\u{0}".utf8) + spki).prefix(16)))
    }

    // MARK: collateral directory

    func testTheCollateralDirectoryReadsOneEntryPerFMSPC() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-collateral-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = Self.collateral
        let fmspc = Self.tdx.platform.fmspc
        try Data(c.dcapQVLJSON).write(to: dir.appendingPathComponent(Hex.encode(fmspc) + ".json"))
        // Another platform's collateral as the files a PCS client saves.
        let other: [UInt8] = [0, 0x90, 0x6e, 0xd5, 0, 1]
        let folder = dir.appendingPathComponent(Hex.encode(other))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let files: [String: [UInt8]] = [
            "tcbinfo_response.json": c.tcbInfo.pcsBody(key: "tcbInfo"), "qeidentity_response.json": c.qeIdentity.pcsBody(key: "enclaveIdentity"),
            "tcb_info_issuer_chain.pem": Array(c.tcbInfoIssuerChain.utf8), "qe_identity_issuer_chain.pem": Array(c.qeIdentityIssuerChain.utf8),
            "pck_crl.der": c.pckCRL, "root_ca_crl.der": c.rootCACRL,
        ]
        for (name, bytes) in files { try Data(bytes).write(to: folder.appendingPathComponent(name)) }
        let source = TDXCollateralDirectory(directory: dir)
        XCTAssertEqual(try source.collateral(fmspc: fmspc), c)
        XCTAssertEqual(try source.collateral(fmspc: fmspc), c, "served again from memory")
        XCTAssertEqual(try source.collateral(fmspc: other)?.tcbInfo, c.tcbInfo)
        XCTAssertNil(try source.collateral(fmspc: [1, 2, 3, 4, 5, 6]))
        // A damaged file is refused, not taken for no collateral.
        try Data("{".utf8).write(to: dir.appendingPathComponent(Hex.encode(fmspc) + ".json"))
        XCTAssertThrowsError(try source.collateral(fmspc: fmspc)) { e in XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed) }
    }
}
