import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// The SEV-SNP fixtures (Tests/Fixtures/sev-snp) and their manifest.
enum SNPFixtures {
    /// The manifest's verify_now: 2025-06-01T00:00:00Z.
    static let now = Date(timeIntervalSince1970: 1_748_736_000)

    static func bytes(_ path: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: fixture("sev-snp/\(path)")))
    }

    /// AMD's roots as the corpus has them, pinned to AMD's ARK digests.
    static func amdStore() throws -> SNPTrustStore {
        try SNPTrustStore(directory: fixture("sev-snp/roots"), pinning: .amd)
    }

    /// A store of the certificates in the given roots files only (AMD pins).
    static func store(files: [String]) throws -> SNPTrustStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snp-roots-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in files { try Data(bytes("roots/\(f)")).write(to: dir.appendingPathComponent(f)) }
        return try SNPTrustStore(directory: dir, pinning: .amd)
    }

    struct Sample {
        let dir: String
        let report: [UInt8]
        let signer: [UInt8]
        let signerType: String
        let manifest: [String: Any]
    }

    static func manifest() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("sev-snp/manifest.json"))) as! [String: Any]
    }

    /// Every manifest sample with a report.
    static func samples() throws -> [Sample] {
        try (manifest()["samples"] as! [[String: Any]]).compactMap { s in
            guard let report = s["report"] as? String, let dir = s["dir"] as? String else { return nil }
            return Sample(dir: dir, report: try bytes("\(dir)/\(report)"), signer: try bytes("\(dir)/\(s["signer"] as! String)"),
                          signerType: s["signer_type"] as! String, manifest: s)
        }
    }

    static func sample(_ dir: String) throws -> Sample {
        guard let s = try samples().first(where: { $0.dir == dir }) else { throw TestFailure("no sample \(dir) in the manifest") }
        return s
    }
}

/// Software TEE platforms, made once per test process (RSA key generation is slow).
enum SNPSim {
    static let milan = try! SoftwareSNP(product: .milan)
    static let genoa = try! SoftwareSNP(product: .genoa, tcb: SNPTCBComponents(bootloader: 10, tee: 0, snp: 23, microcode: 84))
    static let turin = try! SoftwareSNP(product: .turin, tcb: SNPTCBComponents(bootloader: 1, tee: 2, snp: 3, microcode: 9, fmc: 4))

    /// A store trusting exactly these platforms' roots.
    static func store(_ platforms: [SoftwareSNP]) throws -> SNPTrustStore {
        var products: [SNPProduct: SNPTrustStore.ProductRoots] = [:]
        for p in platforms {
            products[p.product] = SNPTrustStore.ProductRoots(ark: p.ark, arkPin: Crypto.sha256(try p.ark.der), ask: p.ask, asvk: p.asvk)
        }
        return SNPTrustStore(products: products)
    }

    static func verifier(_ platforms: [SoftwareSNP] = [milan, genoa, turin]) throws -> SNPVerifier {
        SNPVerifier(trust: try store(platforms))
    }
}

extension TEEVerification {
    /// The codes of a rejection (empty when verified).
    var codes: [String] { violations.map(\.code.rawValue) }

    var claims: Claims? {
        switch self {
        case let .verified(c, _): c
        case let .rejected(_, c): c
        }
    }
}

extension SNPAuthentication {
    var refusal: PolicyViolation? {
        if case let .refused(v) = self { return v }
        return nil
    }
}
