import Foundation
import VouchAttestation
import VouchCore
import VouchPolicy
import VouchTEEWire

/// `vouch-bench tee`: confidential-VM evidence verification on real samples (Tests/Fixtures),
/// one thread, as the TPM rows: an SEV-SNP report (milan-virtee, AMD's compiled-in roots) and a
/// TDX quote with its collateral (dcapqvl-v4-uptodate, the pinned Intel SGX Root CA), each at the
/// instant its corpus manifest pins. Rates are per CPU-second of the measuring thread (`rates`).
/// Warm: one verifier kept across calls, as the broker keeps one (SNP: the ARK→ASK chain cached,
/// so a call checks the report's signature; TDX: collateral, PCK chain and the QE report's
/// signature cached by their exact bytes, so a call checks the quote's signature). Cold: a fresh
/// verifier per call (the trust anchors are loaded once, outside the loop), so every chain, CRL
/// and collateral signature is checked each time. Every call must verify; a refusal stops the
/// bench.
public enum TEEBench {
    static let snpSample = "milan-virtee"
    static let tdxSample = "dcapqvl-v4-uptodate"

    public static func run(_ argv: [String]) throws -> Int32 {
        let (fixtures, seconds, out) = try Bench.fixtureOptions(argv)
        var results: [Bench.Result] = []

        // SEV-SNP.
        let snpDir = fixtures.appendingPathComponent("sev-snp")
        let snpNow = try pinnedTime(snpDir, sample: snpSample, field: "verify_now")
        let evidence = SNPEvidence(report: try read(snpDir, "\(snpSample)/report.bin"), endorsementKey: try read(snpDir, "\(snpSample)/vcek.der"))
        let trust = try AMDRoots.trustStore()
        let snp = SNPVerifier(trust: trust)
        func checkSNP(_ v: SNPVerifier) throws {
            guard case .verified = v.verify(evidence, at: snpNow) else { throw VouchError(.internalError, "the SEV-SNP sample \(snpSample) was refused") }
        }
        try checkSNP(snp)
        let snpWhat = "\(snpSample) report (\(evidence.report.count) bytes) + VCEK at \(snpNow.formatted(.iso8601)), AMD's compiled-in roots, default policy, no CRL"
        results.append(try row("SEV-SNP report verify, warm verifier", "reports",
                               "\(snpWhat); ARK→ASK and the verified VCEK cached (by its exact bytes, in its window): per call the report parse, binding, P-384 report signature, claims",
                               seconds: seconds) { try checkSNP(snp) })
        results.append(try row("SEV-SNP report verify, cold verifier", "reports",
                               "\(snpWhat); a fresh SNPVerifier per call: also the ARK pin, self-signature and ARK→ASK",
                               seconds: seconds) { try checkSNP(SNPVerifier(trust: trust)) })

        // TDX.
        let tdxDir = fixtures.appendingPathComponent("tdx")
        let tdxNow = try pinnedTime(tdxDir, sample: tdxSample, field: "now")
        let quote = try read(tdxDir, "\(tdxSample)/quote.bin")
        let collateral = try TDXCollateral(dcapQVLJSON: try read(tdxDir, "\(tdxSample)/collateral.json"))
        let roots = [try IntelSGXRoot.certificate()]
        let tdx = TDXVerifier(roots: roots)
        func checkTDX(_ v: TDXVerifier) throws {
            guard case let .verified(claims, _) = v.verify(quote: quote, collateral: collateral, at: tdxNow), claims.tcbStatus == "UpToDate" else {
                throw VouchError(.internalError, "the TDX sample \(tdxSample) was refused or not UpToDate")
            }
        }
        try checkTDX(tdx)
        let tdxWhat = "\(tdxSample) quote v4 (\(quote.count) bytes) + its dcap-qvl collateral (parsed once) at \(tdxNow.formatted(.iso8601)), pinned Intel SGX Root CA, default policy, UpToDate"
        results.append(try row("TDX quote verify, warm verifier", "quotes",
                               "\(tdxWhat); collateral, PCK chain and QE report signature cached (by their exact bytes, in their window): per call the quote parse, the QE report's binding of the attestation key, the quote's P-256 signature, QE identity and TCB levels, claims",
                               seconds: seconds) { try checkTDX(tdx) })
        results.append(try row("TDX quote verify, cold verifier", "quotes",
                               "\(tdxWhat); a fresh TDXVerifier per call: also both CRLs, the PCK chain, the TCB info and QE identity chains and signatures",
                               seconds: seconds) { try checkTDX(TDXVerifier(roots: roots)) })

        try Bench.emit(results, to: out)
        return 0
    }

    /// Runs `body` for about `seconds` of wall time and returns calls per CPU-second of this
    /// thread (user and system time: what the calls cost, whatever else the machine runs, as
    /// `openssl speed` divides by its user CPU time) and calls per wall-clock second.
    static func rates(seconds: Double, _ body: () throws -> Void) rethrows -> (cpu: Double, wall: Double) {
        func cpuNow() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        var n = 0
        let start = Date(), cpuStart = cpuNow()
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<16 { try body() }
            n += 16
        }
        let cpu = cpuNow() - cpuStart, wall = Date().timeIntervalSince(start)
        return (Double(n) / cpu, Double(n) / wall)
    }

    /// A row whose rate is per CPU-second, with the wall-clock rate in its detail.
    static func row(_ name: String, _ unit: String, _ detail: String, seconds: Double, _ body: () throws -> Void) rethrows -> Bench.Result {
        let r = try rates(seconds: seconds, body)
        return Bench.Result(name: name, unit: "\(unit) per CPU-second", rate: r.cpu, detail: "\(detail); wall clock \(Int(r.wall.rounded()))/s")
    }

    static func read(_ dir: URL, _ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: dir.appendingPathComponent(path)))
    }

    /// The verification time the corpus manifest pins: the sample's own `field`, else the
    /// manifest's top-level one.
    static func pinnedTime(_ dir: URL, sample: String, field: String) throws -> Date {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("manifest.json"))) as? [String: Any]
        let entry = (manifest?["samples"] as? [[String: Any]])?.first { $0["dir"] as? String == sample }
        guard let text = (entry?[field] ?? manifest?[field]) as? String, let date = ISO8601DateFormatter().date(from: text) else {
            throw VouchError(.config, "\(dir.path)/manifest.json pins no \(field) for \(sample)")
        }
        return date
    }
}
