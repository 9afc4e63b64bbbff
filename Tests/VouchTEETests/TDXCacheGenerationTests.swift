import Foundation
import XCTest
import VouchAttestation
import VouchCollateral
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// The TDX cache's generations: one fetch holds both PCK CAs' CRLs (so a reader of the cache gets
/// the CRL of the CA that issued its quote's PCK certificate, whichever CA's quote made the
/// broker fetch), and a reader follows the `<fmspc>` link once, never mixing two generations.
extension IntelPCSFetcherTests {
    /// The software TEE's platform again, its PCK certificate issued by a processor CA under the
    /// same root (same FMSPC, TCB signing key and QE).
    static func processorCASibling(of tdx: SoftwareTDX) throws -> SoftwareTDX {
        let org = ("O", TEESimulation.organization)
        let (from, to) = (TDXSamples.date("2025-01-01T00:00:00Z"), TDXSamples.date("2030-01-01T00:00:00Z"))
        let ca = try tdx.root.tdxSimulationCA(subject: [("CN", "Simulated SGX PCK Processor CA"), org], key: try PrivateKey.generate(), notBefore: from, notAfter: to)
        let key = try PrivateKey.generate()
        let p = tdx.platform
        let sgx = SGXPCKExtension(ppid: p.ppid, tcbComponents: p.sgxComponents, pceSvn: p.pceSvn, cpuSvn: p.sgxComponents, pceID: p.pceID, fmspc: p.fmspc)
        let leaf = try ca.tdxSimulationLeaf(subject: [("CN", "Simulated SGX PCK Certificate"), org], publicKey: try key.publicKey, notBefore: from, notAfter: to,
                                            extensions: [(SGXPCKExtension.oid, sgx.encoded)])
        return SoftwareTDX(platform: p, qe: tdx.qe, root: tdx.root, pckCA: ca, pck: (leaf, key), tcbSigning: (tdx.tcbSigningCertificate, tdx.tcbSigningKey),
                           attestationKey: tdx.attestationKey)
    }

    /// The software TEE's collateral, its QE identity issued `qeIssue`.
    static func simCollateral(_ tdx: SoftwareTDX, qeIssue: Date? = nil) throws -> TDXCollateral {
        try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: simIssue, nextUpdate: simNext, tcbDate: simIssue)),
                           qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: qeIssue ?? simIssue, nextUpdate: simNext, tcbDate: simIssue)),
                           crlThisUpdate: simIssue, crlNextUpdate: simNext)
    }

    func testOneFetchServesBothPCKCAsAndAReaderOfTheCacheGetsItsCAsCRL() throws {
        let (now, tdx) = (Self.simNow, Self.simTDX)
        let processor = try Self.processorCASibling(of: tdx)
        let (c, p) = (try Self.simCollateral(tdx), try Self.simCollateral(processor))
        XCTAssertNotEqual(c.pckCRL, p.pckCRL)
        serve(c, fmspc: Hex.encode(tdx.platform.fmspc), processorCRL: (p.pckCRL, p.pckCRLIssuerChain))
        let binding = Crypto.sha256([4, 5, 6]), hostKey = try PrivateKey.generate(.p256).publicKey.canonicalSPKIDER
        let body = SoftwareTDX.body(reportData: EnrollmentBinding.teeReportData(binding: binding))
        let (platformQuote, processorQuote) = (try tdx.quote(body), try processor.quote(body))

        // A processor-CA quote makes the broker fetch; a platform-CA quote then finds its set there.
        let fetcher = fetcher()
        XCTAssertEqual(fetcher.collateral(for: try request(processorQuote, roots: tdx.roots, at: now), at: now)?.pckCRL, p.pckCRL)
        XCTAssertEqual(server.requests.count, 5)
        XCTAssertEqual(fetcher.collateral(for: try request(platformQuote, roots: tdx.roots, at: now), at: now)?.pckCRL, c.pckCRL)
        XCTAssertEqual(server.requests.count, 5, "one fetch for the platform, both CAs")

        // Another vouchd reading the cache (read-only) verifies both quotes: each gets its CA's
        // CRL and issuer chain.
        let directory = TDXCollateralDirectory(directory: scratch)
        XCTAssertEqual(try directory.collateral(for: try request(processorQuote, roots: tdx.roots, at: now), at: now)?.pckCRLIssuerChain, p.pckCRLIssuerChain)
        XCTAssertEqual(try directory.collateral(for: try request(platformQuote, roots: tdx.roots, at: now), at: now)?.pckCRLIssuerChain, c.pckCRLIssuerChain)
        let reader = TDXEvidenceVerifier(trust: TEETrust(tdxCollateral: directory).trustingSimulation(snp: nil, tdxRoots: tdx.roots))
        for quote in [platformQuote, processorQuote, platformQuote] {
            let raw = RawEvidence(device: "tdx", payload: .tdx(TDXRawEvidence(quote: quote)))
            XCTAssertNoThrow(try reader.identify(raw, binding: binding, hostKey: hostKey, at: now).get())
        }
    }

    /// A reader inside a generation when the link is swapped to another finishes from the one it
    /// started in. The first file it reads is a FIFO here, so the swap happens — deterministically
    /// — while it is inside the read.
    func testAReaderFollowsTheLinkOnceAndNeverMixesGenerations() throws {
        let tdx = Self.simTDX
        let (first, second) = (try Self.simCollateral(tdx), try Self.simCollateral(tdx, qeIssue: Self.simIssue.addingTimeInterval(86_400)))
        XCTAssertNotEqual(first.qeIdentity, second.qeIdentity)
        let fmspc = Hex.encode(tdx.platform.fmspc)
        let (genA, genB) = (".\(fmspc).1.aaaaaaaa", ".\(fmspc).2.bbbbbbbb")
        try writePCSFiles(first, to: scratch.appendingPathComponent(genA))
        try writePCSFiles(second, to: scratch.appendingPathComponent(genB))
        let fifo = scratch.appendingPathComponent(genA).appendingPathComponent("tcbinfo_response.json")
        try FileManager.default.removeItem(at: fifo)
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        try FileManager.default.createSymbolicLink(atPath: scratch.appendingPathComponent(fmspc).path, withDestinationPath: genA)

        final class Outcome: @unchecked Sendable { var read: Result<TDXCollateral?, Error>? }   // written before `done` is signalled
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let directory = TDXCollateralDirectory(directory: scratch)
        Thread.detachNewThread {
            outcome.read = Result { try directory.collateral(fmspc: tdx.platform.fmspc) }
            done.signal()
        }
        // The writer's open succeeds once the reader has opened the FIFO (it then waits for data).
        var fd: Int32 = -1
        for _ in 0..<3000 where fd < 0 {
            fd = open(fifo.path, O_WRONLY | O_NONBLOCK)
            if fd < 0 { usleep(10_000) }
        }
        XCTAssertGreaterThanOrEqual(fd, 0, "the reader never opened the first file")
        guard fd >= 0 else { return }
        // Swap in generation B as a fetcher does (a new link renamed over the old), then let the
        // reader go on.
        let link = scratch.appendingPathComponent(".\(fmspc).link-test").path
        XCTAssertEqual(symlink(genB, link), 0)
        XCTAssertEqual(rename(link, scratch.appendingPathComponent(fmspc).path), 0)
        _ = fcntl(fd, F_SETFL, 0)
        let bytes = first.tcbInfo.pcsBody(key: "tcbInfo")
        XCTAssertEqual(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, bytes.count)
        close(fd)
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        let collateral = try XCTUnwrap(try XCTUnwrap(outcome.read).get())
        XCTAssertEqual(collateral.tcbInfo, first.tcbInfo)
        XCTAssertEqual(collateral.qeIdentity, first.qeIdentity, "every file from the generation the read began in")
        // The next read follows the link to generation B.
        XCTAssertEqual(try directory.collateral(fmspc: tdx.platform.fmspc)?.qeIdentity, second.qeIdentity)
    }

    /// `c` as the PCS files a client saves, in `folder`.
    func writePCSFiles(_ c: TDXCollateral, to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let files: [String: [UInt8]] = [
            "tcbinfo_response.json": c.tcbInfo.pcsBody(key: "tcbInfo"), "tcb_info_issuer_chain.pem": Array(c.tcbInfoIssuerChain.utf8),
            "qeidentity_response.json": c.qeIdentity.pcsBody(key: "enclaveIdentity"), "qe_identity_issuer_chain.pem": Array(c.qeIdentityIssuerChain.utf8),
            "pck_crl_platform.der": c.pckCRL, "pck_crl_issuer_chain.pem": Array(c.pckCRLIssuerChain.utf8), "root_ca_crl.der": c.rootCACRL,
        ]
        for (name, bytes) in files { try Data(bytes).write(to: folder.appendingPathComponent(name)) }
    }
}
