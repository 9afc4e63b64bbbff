import Foundation
import Synchronization
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// The CRL of a broker that fetches AMD's endorsements (`SNPEvidenceVerifier` check 3a), for
/// evidence verified under the broker's own (not the software TEE's) roots: here a test chain
/// whose names are not the simulation's, pinned in the broker's trust store as AMD's would be.
/// The source's CRL is required (`snp_crl_unavailable` without it, never a warning), is the list
/// for the key kind that signed the report, and a CRL the host sent is checked as well, never in
/// its place.
final class SNPFetchedCRLTests: XCTestCase {
    /// An `SNPEndorsementSource` handing out set CRLs and recording what it was asked.
    final class Source: SNPEndorsementSource {
        let lists: [SNPSigningKey: [UInt8]]
        let asked = Mutex<[SNPSigningKey]>([])
        init(_ lists: [SNPSigningKey: [UInt8]]) { self.lists = lists }
        func vcek(_ request: SNPVCEKRequest, at now: Date) -> [UInt8]? { nil }
        func crl(product: SNPProduct, signer: SNPSigningKey, at now: Date) -> [UInt8]? {
            asked.withLock { $0.append(signer) }
            return product == .milan ? lists[signer] : nil
        }
    }

    static let now = Date.parseRFC3339("2026-01-15T00:00:00Z")!
    /// A Milan platform under a chain that does not name the software TEE.
    static let platform = try! SoftwareSNP.outsideSimulation(.milan)
    let binding = Crypto.sha256(Array("a request's binding".utf8))

    func crl(revoking: [Certificate] = [], daysAgo: Double = 1) throws -> [UInt8] {
        try Self.platform.crl(revoking: revoking, thisUpdate: Self.now.addingTimeInterval(-daysAgo * 86_400),
                              nextUpdate: Self.now.addingTimeInterval(30 * 86_400))
    }

    /// Registration of a report signed by `signer`, sent with its VCEK/VLEK and `sent` as its CRL.
    func identify(signer: SNPSigningKey = .vcek, sent: [UInt8]? = nil, source: (any SNPEndorsementSource)?) throws -> Result<TEEIdentification, VouchError> {
        let p = Self.platform
        var trust = TEETrust()
        trust.snp = SNPTrustStore(products: [.milan: SNPTrustStore.ProductRoots(ark: p.ark, arkPin: Crypto.sha256(try p.ark.der), ask: p.ask, asvk: p.asvk)])
        trust.snpEndorsements = source
        let report = try p.sign(p.report(signer: signer, reportData: EnrollmentBinding.teeReportData(binding: binding)))
        let endorsement = try signer == .vlek ? p.vlek.der : p.vcek.der
        let raw = RawEvidence(device: "sev-snp", payload: .sevSNP(SNPRawEvidence(report: report, endorsement: .certificate(endorsement), crl: sent)))
        return SNPEvidenceVerifier(trust: trust).identify(raw, binding: binding, hostKey: try PrivateKey.generate(.p256).publicKey.canonicalSPKIDER, at: Self.now)
    }

    func code(_ r: Result<TEEIdentification, VouchError>) -> ErrorCode? {
        if case let .failure(e) = r { return e.code }
        return nil
    }

    func testABrokerThatFetchesRefusesEvidenceWithoutACurrentCRL() throws {
        // No CRL to be had (KDS down, its budget spent, nothing cached): refused, with or without
        // one sent — a host cannot make up for the broker's list.
        XCTAssertEqual(code(try identify(source: Source([:]))), .snpCRLUnavailable)
        XCTAssertEqual(code(try identify(sent: try crl(), source: Source([:]))), .snpCRLUnavailable)
        XCTAssertEqual(ErrorCode.snpCRLUnavailable.status, 403)
        // With it: registered, and the evidence kept for offline re-verification carries the
        // broker's CRL (the one revocation was checked with), not the host's or none.
        let brokers = try crl()
        XCTAssertEqual(try identify(source: Source([.vcek: brokers])).get().summary.evidence.crl, brokers)
        XCTAssertEqual(try identify(sent: try crl(daysAgo: 20), source: Source([.vcek: brokers])).get().summary.evidence.crl, brokers)
        // A broker that fetches nothing takes the report as before (the operator's choice; the
        // claims then carry snp_revocation_not_checked).
        XCTAssertNoThrow(try identify(source: nil).get())
    }

    /// A host's old CRL, still in its window but from before its ASK was revoked, does not stand
    /// in for the broker's: both are checked.
    func testACRLTheHostSentIsCheckedBesidesTheBrokersNeverInstead() throws {
        let ask = Self.platform.ask
        let source = Source([.vcek: try crl(revoking: [ask])])
        XCTAssertEqual(code(try identify(sent: try crl(daysAgo: 20), source: source)), .snpCertificateRevoked)
        XCTAssertEqual(code(try identify(source: source)), .snpCertificateRevoked)
        // The broker's list clean, the host's listing the ASK: refused too.
        let clean = Source([.vcek: try crl()])
        XCTAssertEqual(code(try identify(sent: try crl(revoking: [ask]), source: clean)), .snpCertificateRevoked)
        XCTAssertNoThrow(try identify(sent: try crl(daysAgo: 20), source: clean).get())
        // A sent CRL that is not the ARK's is refused as ever.
        let foreign = try SNPSim.milan.crl(revoking: [], thisUpdate: Self.now.addingTimeInterval(-86_400), nextUpdate: Self.now.addingTimeInterval(86_400))
        XCTAssertEqual(code(try identify(sent: foreign, source: clean)), .snpCRLInvalid)
    }

    /// A VLEK-signed report is checked against the ASVK list (asked for as such), never the ASK
    /// list; a CRL it sends cannot be told to be the ASVK list, so a broker that fetches refuses it.
    func testAVLEKSignedReportIsCheckedAgainstTheASVKList() throws {
        let p = Self.platform
        let revokedASVK = Source([.vcek: try crl(), .vlek: try crl(revoking: [p.asvk])])
        XCTAssertEqual(code(try identify(signer: .vlek, source: revokedASVK)), .snpCertificateRevoked)
        XCTAssertEqual(revokedASVK.asked.withLock { $0 }, [.vlek])
        let onlyASKList = Source([.vcek: try crl()])
        XCTAssertEqual(code(try identify(signer: .vlek, source: onlyASKList)), .snpCRLUnavailable, "the ASK list does not stand in")
        let clean = Source([.vlek: try crl()])
        XCTAssertNoThrow(try identify(signer: .vlek, source: clean).get())
        XCTAssertEqual(code(try identify(signer: .vlek, sent: try crl(), source: clean)), .snpCRLInvalid)
        // The ASK's revocation says nothing about a VLEK-signed report.
        XCTAssertNoThrow(try identify(signer: .vlek, source: Source([.vcek: try crl(revoking: [p.ask]), .vlek: try crl()])).get())
    }
}

extension SoftwareSNP {
    /// A platform of `product` whose ARK, ASK and ASVK name an organisation other than the
    /// software TEE's: a broker trusting its ARK verifies its evidence as AMD's (fetching a CRL
    /// for it), not as a simulation's.
    static func outsideSimulation(_ product: SNPProduct) throws -> SoftwareSNP {
        func name(_ cn: String) -> [(attribute: String, value: String)] { [("O", "Vouch test vendor"), ("CN", cn)] }
        let (from, to) = SoftwareSNP.rootValidity
        let arkKey = try PrivateKey.generateRSA(bits: 2048), askKey = try PrivateKey.generateRSA(bits: 2048), asvkKey = try PrivateKey.generateRSA(bits: 2048)
        let ark = try RSAPSSIssuer.issue(subject: name("ARK-\(product.rawValue)"), publicKey: arkKey.publicKey, issuer: nil, signingKey: arkKey,
                                         serial: [1, 0, 0], notBefore: from, notAfter: to, isCA: true)
        let ask = try RSAPSSIssuer.issue(subject: name("SEV-\(product.rawValue)"), publicKey: askKey.publicKey, issuer: ark, signingKey: arkKey,
                                         serial: [1, 0, 1], notBefore: from, notAfter: to, isCA: true)
        let asvk = try RSAPSSIssuer.issue(subject: name("SEV-VLEK-\(product.rawValue)"), publicKey: asvkKey.publicKey, issuer: ark, signingKey: arkKey,
                                          serial: [1, 1, 1], notBefore: from, notAfter: to, isCA: true)
        let tcb = SNPTCBComponents(bootloader: 3, tee: 0, snp: 8, microcode: 115)
        let chipID = try Crypto.randomBytes(64)
        let (vcekKey, vlekKey) = (try PrivateKey.generate(.p384), try PrivateKey.generate(.p384))
        let unsigned = try SoftwareSNP(product: product, tcb: tcb, chipID: chipID, ark: (ark, arkKey), ask: (ask, askKey), asvk: (asvk, asvkKey),
                                       vcek: (ark, vcekKey), vlek: (ark, vlekKey))
        let vcek = try unsigned.issueEndorsement(.vcek, key: vcekKey, extensions: extensions(product: product, tcb: tcb, hwID: chipID))
        let vlek = try unsigned.issueEndorsement(.vlek, key: vlekKey, extensions: extensions(product: product, tcb: tcb, cspID: "CN=vouch-test-csp.example"))
        return try SoftwareSNP(product: product, tcb: tcb, chipID: chipID, ark: (ark, arkKey), ask: (ask, askKey), asvk: (asvk, asvkKey),
                               vcek: (vcek, vcekKey), vlek: (vlek, vlekKey))
    }
}
