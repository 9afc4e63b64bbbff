import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTEESim
import VouchTEEWire

/// The software TEE as a machine that lasts (`vouch-attester --simulate-tee`): one SEV-SNP
/// platform (test ARK, ASK, ASVK, one chip's VCEK, a VLEK) and one TDX platform (test root, PCK
/// CA, PCK certificate, TCB signing certificate, QE attestation key), made once and kept in a
/// directory so that a restarted attester is the same chip, signing under the same roots.
/// INSECURE by design — every key is a file; for tests and demos only. Several attesters may
/// share one platform directory (several guests on one machine: VCEK-signed guests then share
/// their chip's host id).
///
/// The directory holds:
/// - `platform.json` (mode 0600): every key and certificate, PEM;
/// - `roots/sev-snp.pem` (ASK, ASVK, ARK) and `roots/tdx.pem` (the root): what a broker started
///   with `--allow-simulated-hosts --simulated-tee-roots DIR/roots` trusts;
/// - `tdx-collateral/<fmspc>.json`: the TDX platform's collateral (TCB info, QE identity, CRLs;
///   dcap-qvl's QuoteCollateralV3 JSON) for `vouchd --tdx-collateral`, re-signed whenever the
///   platform is loaded so that its window (a day back, 30 days ahead) covers now.
public final class SimulatedTEEPlatform: Sendable {
    public let directory: String
    public let snp: SoftwareSNP
    public let tdx: SoftwareTDX

    public var rootsDirectory: String { directory + "/roots" }
    public var collateralDirectory: String { directory + "/tdx-collateral" }
    static let fileName = "platform.json"
    /// A platform file larger than this is refused unread.
    static let maxFileBytes = 256 << 10

    init(directory: String, snp: SoftwareSNP, tdx: SoftwareTDX) {
        self.directory = directory
        self.snp = snp
        self.tdx = tdx
    }

    /// The platform kept in `directory`, made there first if there is none (of two processes
    /// making one at once, one wins and the other loads it). Its roots and collateral are
    /// (re)published each time.
    public static func loadOrCreate(directory: String, now: Date = Date()) throws -> SimulatedTEEPlatform {
        try Files.makeDirectory(directory)
        let path = directory + "/" + fileName
        if !Files.exists(path) {
            let made = try SimulatedTEEPlatform(directory: directory, snp: SoftwareSNP(),
                                                tdx: SoftwareTDX(notBefore: now.addingTimeInterval(-86_400), notAfter: now.addingTimeInterval(10 * 365 * 86_400)))
            _ = try Files.createOnce(JSONCodec.encode(try made.stored), at: path, mode: 0o600)
        }
        let platform = try SimulatedTEEPlatform(directory: directory, stored: JSONCodec.decode(Stored.self, from: Files.readSecret(path, maxBytes: maxFileBytes)))
        try platform.publish(now: now)
        return platform
    }

    /// Writes the roots and the TDX collateral (valid from a day before `now` to 30 days after).
    public func publish(now: Date) throws {
        try Files.makeDirectory(rootsDirectory, mode: 0o755)
        try Files.writeAtomically(Array(try snp.rootsPEM.utf8), to: rootsDirectory + "/sev-snp.pem")
        try Files.writeAtomically(Array(try tdx.root.certificate.pem.utf8), to: rootsDirectory + "/tdx.pem")
        let issue = now.addingTimeInterval(-86_400), next = now.addingTimeInterval(30 * 86_400), tcbDate = now.addingTimeInterval(-30 * 86_400)
        let collateral = try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                            qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                            crlThisUpdate: issue, crlNextUpdate: next)
        try Files.makeDirectory(collateralDirectory, mode: 0o755)
        try Files.writeAtomically(collateral.dcapQVLJSON, to: collateralDirectory + "/\(Hex.encode(tdx.platform.fmspc)).json")
    }

    // MARK: the file

    typealias KeyPair = StoredKeyPair

    struct StoredSNP: Codable {
        var product: SNPProduct
        var tcb: SNPTCBComponents
        var chipID: String
        var ark, ask, asvk, vcek, vlek: KeyPair
    }

    struct StoredTDX: Codable {
        var fmspc, pceID, sgxComponents, ppid: String
        var pceSvn: UInt16
        var root, pckCA, pck, tcbSigning: KeyPair
        var attestationKey: String
    }

    struct Stored: Codable {
        var version = 1
        var snp: StoredSNP
        var tdx: StoredTDX
    }

    var stored: Stored {
        get throws {
            let p = tdx.platform
            return Stored(snp: StoredSNP(product: snp.product, tcb: snp.tcb, chipID: Hex.encode(snp.chipID), ark: try KeyPair(snp.ark, snp.arkKey),
                                         ask: try KeyPair(snp.ask, snp.askKey), asvk: try KeyPair(snp.asvk, snp.asvkKey),
                                         vcek: try KeyPair(snp.vcek, snp.vcekKey), vlek: try KeyPair(snp.vlek, snp.vlekKey)),
                          tdx: StoredTDX(fmspc: Hex.encode(p.fmspc), pceID: Hex.encode(p.pceID), sgxComponents: Hex.encode(p.sgxComponents),
                                         ppid: Hex.encode(p.ppid), pceSvn: p.pceSvn, root: try KeyPair(tdx.root.certificate, tdx.root.key),
                                         pckCA: try KeyPair(tdx.pckCA.certificate, tdx.pckCA.key), pck: try KeyPair(tdx.pckCertificate, tdx.pckKey),
                                         tcbSigning: try KeyPair(tdx.tcbSigningCertificate, tdx.tcbSigningKey), attestationKey: try tdx.attestationKey.pem))
        }
    }

    convenience init(directory: String, stored s: Stored) throws {
        guard s.version == 1 else {
            throw VouchError(.config, "the simulated TEE platform file has an unknown version", context: ["path": directory + "/" + Self.fileName, "got": "\(s.version)"])
        }
        let snp = try SoftwareSNP(product: s.snp.product, tcb: s.snp.tcb, chipID: try Hex.decode(s.snp.chipID, field: "snp.chipID"),
                                  ark: try s.snp.ark.loaded, ask: try s.snp.ask.loaded, asvk: try s.snp.asvk.loaded,
                                  vcek: try s.snp.vcek.loaded, vlek: try s.snp.vlek.loaded)
        var platform = SoftwareTDX.Platform()
        platform.fmspc = try Hex.decode(s.tdx.fmspc, field: "tdx.fmspc")
        platform.pceID = try Hex.decode(s.tdx.pceID, field: "tdx.pceID")
        platform.sgxComponents = try Hex.decode(s.tdx.sgxComponents, field: "tdx.sgxComponents")
        platform.ppid = try Hex.decode(s.tdx.ppid, field: "tdx.ppid")
        platform.pceSvn = s.tdx.pceSvn
        let root = try s.tdx.root.loaded, pckCA = try s.tdx.pckCA.loaded
        let tdx = SoftwareTDX(platform: platform, root: try CertificateAuthority(key: root.1, certificate: root.0),
                              pckCA: try CertificateAuthority(key: pckCA.1, certificate: pckCA.0), pck: try s.tdx.pck.loaded,
                              tcbSigning: try s.tdx.tcbSigning.loaded, attestationKey: try PrivateKey(pem: s.tdx.attestationKey))
        self.init(directory: directory, snp: snp, tdx: tdx)
    }
}
