import Foundation
import Synchronization
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// TDX collateral from Intel's Provisioning Certification Service (API v4), kept in an on-disk
/// cache in the layout `TDXCollateralDirectory` reads, so the same directory can be handed to
/// another `vouchd --tdx-collateral` read-only. For a platform (FMSPC) and the CA that issued its
/// PCK certificate it fetches, with plain GETs (no API key: these endpoints need none):
/// - `/tdx/certification/v4/tcb?fmspc=<hex>`: the TCB info (`tcbinfo_response.json`), its issuer
///   chain in the URL-encoded `TCB-Info-Issuer-Chain` header (`tcb_info_issuer_chain.pem`);
/// - `/tdx/certification/v4/qe/identity`: the TD QE identity (`qeidentity_response.json`),
///   header `SGX-Enclave-Identity-Issuer-Chain` (`qe_identity_issuer_chain.pem`);
/// - `/sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der`: the PCK CRL
///   (`pck_crl_<ca>.der`, DER, PEM also taken), header `SGX-PCK-CRL-Issuer-Chain`
///   (`pck_crl_issuer_chain.pem`);
/// - the Intel SGX Root CA CRL from its own URL (`root_ca_crl.der`; Intel publishes it at
///   https://certificates.trustedservices.intel.com/IntelSGXRootCA.der).
/// Each body is bounded (`CollateralFetchLimits.maxResponseBytes`) and parsed (the signed JSON
/// objects, their dates, the CRLs) before anything is written; nothing is verified here —
/// `TDXVerifier` checks every signature, chain and window, and the FMSPC.
///
/// `collateral(for:at:)` serves the cached set while every part of it is current at `now` (the
/// broker's clock) and it is younger than `refreshAfter`; otherwise it fetches — only for a quote
/// whose PCK chain verifies to the verifier's roots, and only as the fetch gate allows — and on
/// a failed fetch serves the cached set if it is still current, else nil (the TCB is unknown;
/// the policy decides). It never serves a set a part of which has expired. A PCK certificate
/// issued by neither of Intel's PCK CAs gets nothing (which PCK CRL would be unknown).
public final class IntelPCSFetcher: TDXCollateralSource {
    /// The cache: `<fmspc>` generations (`CacheFiles`).
    public let directory: URL
    let pcs: ServiceGet
    let rootCRL: ServiceGet
    let rootCRLPath: String
    let gate: FetchGate
    let log: @Sendable (String) -> Void

    private struct Entry {
        let collateral: TDXCollateral
        /// The earliest nextUpdate of the TCB info, the QE identity and the two CRLs.
        let validUntil: Date
        let fetchedAt: Date?
    }
    private let entries = Mutex<[String: Entry]>([:])

    /// `pcs` carries requests to the PCS base URL (`HTTPClient(.service(baseURL:))`), `rootCACRL`
    /// to the root CA CRL's host, which serves it at `rootCACRLPath`; `log` hears of failed fetches.
    public init(directory: URL, pcs: any HTTPTransport, rootCACRL: any HTTPTransport, rootCACRLPath: String,
                limits: CollateralFetchLimits = CollateralFetchLimits(), log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.directory = directory
        self.pcs = ServiceGet(transport: pcs, service: "Intel PCS")
        self.rootCRL = ServiceGet(transport: rootCACRL, service: "Intel's root CA CRL host")
        self.rootCRLPath = rootCACRLPath
        self.gate = FetchGate(limits: limits)
        self.log = log
    }

    /// Nil: without the broker's time the fetcher cannot tell what is current, and it never
    /// serves what may have expired (`collateral(for:at:)` is what the broker asks).
    public func collateral(fmspc: [UInt8]) throws -> TDXCollateral? { nil }

    public func collateral(for request: TDXCollateralRequest, at now: Date) -> TDXCollateral? {
        guard request.fmspc.count == 6, let ca = request.pckCA else { return nil }
        let key = "\(Hex.encode(request.fmspc))/\(ca.rawValue)"
        return gate.serialized(key) {
            let cached = entries.withLock { $0[key] } ?? loadCached(request.fmspc, ca: ca)
            let usable = cached.flatMap { now < $0.validUntil ? $0 : nil }
            if let usable, let at = usable.fetchedAt, now.timeIntervalSince(at) < gate.limits.refreshAfter, at <= now { return usable.collateral }
            guard request.pckChainVerifies(), gate.mayFetch(key, at: now) else { return usable?.collateral }
            do {
                return try fetch(fmspc: request.fmspc, ca: ca, at: now)
            } catch {
                log("TDX collateral for FMSPC \(Hex.encode(request.fmspc)) (\(ca.rawValue) CA) not fetched: \(error)"
                    + (usable == nil ? "; none cached is current: the TCB is unknown" : "; the cached copy is used"))
                return usable?.collateral
            }
        }
    }

    /// Fetches the collateral for `fmspc` and `ca` now (no gate, no PCK check), writes it to the
    /// cache and returns it. Throws `collateral_fetch_failed`, `collateral_response_invalid`
    /// (nothing cached). A cache that cannot be written is logged; the fetched set is then kept
    /// in memory only.
    @discardableResult
    public func fetch(fmspc: [UInt8], ca: TDXPCKCA, at now: Date) throws -> TDXCollateral {
        let limit = min(gate.limits.maxResponseBytes, TDXCollateral.maxFieldBytes)
        let fmspcHex = Hex.encode(fmspc)
        let tcbPath = "/tdx/certification/v4/tcb?fmspc=\(fmspcHex)"
        let tcb = try pcs(tcbPath, limit: limit)
        let tcbChain = try pcs.header("TCB-Info-Issuer-Chain", of: tcb, path: tcbPath)
        let qePath = "/tdx/certification/v4/qe/identity"
        let qe = try pcs(qePath, limit: limit)
        let qeChain = try pcs.header("SGX-Enclave-Identity-Issuer-Chain", of: qe, path: qePath)
        let crlPath = "/sgx/certification/v4/pckcrl?ca=\(ca.rawValue)&encoding=der"
        let pckCRL = try pcs(crlPath, limit: limit)
        let pckChain = try pcs.header("SGX-PCK-CRL-Issuer-Chain", of: pckCRL, path: crlPath)
        let root = try rootCRL(rootCRLPath, limit: limit)

        let files: [String: [UInt8]] = [
            "tcbinfo_response.json": tcb.body, "tcb_info_issuer_chain.pem": Array(tcbChain.utf8),
            "qeidentity_response.json": qe.body, "qe_identity_issuer_chain.pem": Array(qeChain.utf8),
            "pck_crl_\(ca.rawValue).der": pckCRL.body, "pck_crl_issuer_chain.pem": Array(pckChain.utf8), "root_ca_crl.der": root.body,
        ]
        let collateral: TDXCollateral
        let validUntil: Date
        do {
            collateral = try TDXCollateral.pcsFiles { files[$0] }
            validUntil = try Self.validUntil(collateral)
        } catch {
            throw pcs.invalid("TDX collateral (signed JSON, PEM chains, CRLs)", path: tcbPath, error)
        }
        guard now < validUntil else {
            throw VouchError(.collateralResponseInvalid, "Intel PCS served TDX collateral that has already expired",
                             context: ["fmspc": fmspcHex, "got": validUntil.iso8601])
        }
        // CRLs are cached as DER whatever PCS sent (PEM, hex DER); the generation holds only the
        // fetched CA's PCK CRL.
        var written = files
        written["pck_crl_\(ca.rawValue).der"] = collateral.pckCRL
        written["root_ca_crl.der"] = collateral.rootCACRL
        let key = "\(fmspcHex)/\(ca.rawValue)"
        entries.withLock { e in
            if e.count >= 1024 { e.removeAll() }
            e[key] = Entry(collateral: collateral, validUntil: validUntil, fetchedAt: now)
        }
        do { try CacheFiles.publish(written, as: fmspcHex, in: directory, fetchedAt: now) } catch {
            log("TDX collateral for FMSPC \(fmspcHex) fetched but not cached: \(error)")
        }
        return collateral
    }

    /// The cached generation for `fmspc`, when it holds `ca`'s PCK CRL and parses.
    private func loadCached(_ fmspc: [UInt8], ca: TDXPCKCA) -> Entry? {
        let name = Hex.encode(fmspc)
        let folder = directory.appendingPathComponent(name, isDirectory: true)
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("pck_crl_\(ca.rawValue).der").path),
              let collateral = try? TDXCollateral.pcsFiles({ CacheFiles.read(folder.appendingPathComponent($0), limit: TDXCollateral.maxFieldBytes) }),
              let validUntil = try? Self.validUntil(collateral) else { return nil }
        let entry = Entry(collateral: collateral, validUntil: validUntil, fetchedAt: CacheFiles.fetchedAt(name, in: directory))
        entries.withLock { $0["\(name)/\(ca.rawValue)"] = entry }
        return entry
    }

    /// The earliest nextUpdate of the parts (each parsed: what does not parse throws).
    static func validUntil(_ c: TDXCollateral) throws -> Date {
        let tcb = try TDXTCBInfo(json: c.tcbInfo.bytes), qe = try TDXQEIdentity(json: c.qeIdentity.bytes)
        let pck = try CRL(der: c.pckCRL), root = try CRL(der: c.rootCACRL)
        return [tcb.nextUpdate, qe.nextUpdate, pck.nextUpdate, root.nextUpdate].min()!
    }
}
