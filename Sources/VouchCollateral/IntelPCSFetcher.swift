import Foundation
import Synchronization
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// TDX collateral from Intel's Provisioning Certification Service (API v4), kept in an on-disk
/// cache in the layout `TDXCollateralDirectory` reads, so the same directory can be handed to
/// another `vouchd --tdx-collateral` read-only. For a platform (FMSPC) it fetches, with plain GETs
/// (no API key: these endpoints need none), in one go:
/// - `/tdx/certification/v4/tcb?fmspc=<hex>`: the TCB info (`tcbinfo_response.json`), its issuer
///   chain in the URL-encoded `TCB-Info-Issuer-Chain` header (`tcb_info_issuer_chain.pem`);
/// - `/tdx/certification/v4/qe/identity`: the TD QE identity (`qeidentity_response.json`),
///   header `SGX-Enclave-Identity-Issuer-Chain` (`qe_identity_issuer_chain.pem`);
/// - `/sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der` for both of Intel's PCK
///   CAs: their PCK CRLs (`pck_crl_<ca>.der`, DER, PEM also taken), header
///   `SGX-PCK-CRL-Issuer-Chain` (`pck_crl_issuer_chain_<ca>.pem`) — a platform's PCK certificates
///   may come from either, and one generation serves both;
/// - the Intel SGX Root CA CRL from its own URL (`root_ca_crl.der`; Intel publishes it at
///   https://certificates.trustedservices.intel.com/IntelSGXRootCA.der).
/// Each body is bounded (`CollateralFetchLimits.maxResponseBytes`) and parsed (the signed JSON
/// objects, their dates, the CRLs) before anything is written; nothing is verified here —
/// `TDXVerifier` checks every signature, chain and window, and the FMSPC. Fetches and cache
/// writes for one FMSPC are serialized (one fetching broker per cache directory).
///
/// `collateral(for:at:)` serves the cached set for the quote's PCK CA while every part of it is
/// current at `now` (the broker's clock) and it is younger than `refreshAfter`; otherwise it
/// fetches — only for a quote whose PCK chain verifies to the verifier's roots, and only as the
/// fetch gate allows — and on a failed fetch serves the cached set if it is still current, else
/// nil (the TCB is unknown; the policy decides). It never serves a set a part of which has
/// expired. A PCK certificate issued by neither of Intel's PCK CAs gets nothing (which PCK CRL
/// would be unknown).
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
        let fmspc = Hex.encode(request.fmspc)
        return gate.serialized(fmspc) {
            let cached = entries.withLock { $0["\(fmspc)/\(ca.rawValue)"] } ?? loadCached(fmspc, ca: ca)
            let usable = cached.flatMap { now < $0.validUntil ? $0 : nil }
            if let usable, let at = usable.fetchedAt, now.timeIntervalSince(at) < gate.limits.refreshAfter, at <= now { return usable.collateral }
            guard request.pckChainVerifies(), gate.mayFetch(fmspc, at: now) else { return usable?.collateral }
            do {
                return try fetchSerialized(fmspc: request.fmspc, at: now)[ca]
            } catch {
                log("TDX collateral for FMSPC \(fmspc) (\(ca.rawValue) CA) not fetched: \(error)"
                    + (usable == nil ? "; none cached is current: the TCB is unknown" : "; the cached copy is used"))
                return usable?.collateral
            }
        }
    }

    /// Fetches the collateral for `fmspc` now (no gate, no PCK check) — for both PCK CAs — writes
    /// it to the cache as one generation and returns the set for `ca`. Throws
    /// `collateral_fetch_failed`, `collateral_response_invalid` (nothing cached). A cache that
    /// cannot be written is logged; the fetched sets are then kept in memory only.
    @discardableResult
    public func fetch(fmspc: [UInt8], ca: TDXPCKCA, at now: Date) throws -> TDXCollateral {
        try gate.serialized(Hex.encode(fmspc)) { try fetchSerialized(fmspc: fmspc, at: now)[ca]! }
    }

    /// `fetch`, its FMSPC's lock held: the sets for both CAs.
    private func fetchSerialized(fmspc: [UInt8], at now: Date) throws -> [TDXPCKCA: TDXCollateral] {
        let limit = min(gate.limits.maxResponseBytes, TDXCollateral.maxFieldBytes)
        let fmspcHex = Hex.encode(fmspc)
        let tcbPath = "/tdx/certification/v4/tcb?fmspc=\(fmspcHex)"
        let tcb = try pcs(tcbPath, limit: limit)
        var files: [String: [UInt8]] = [
            "tcbinfo_response.json": tcb.body, "tcb_info_issuer_chain.pem": Array(try pcs.header("TCB-Info-Issuer-Chain", of: tcb, path: tcbPath).utf8),
        ]
        let qePath = "/tdx/certification/v4/qe/identity"
        let qe = try pcs(qePath, limit: limit)
        files["qeidentity_response.json"] = qe.body
        files["qe_identity_issuer_chain.pem"] = Array(try pcs.header("SGX-Enclave-Identity-Issuer-Chain", of: qe, path: qePath).utf8)
        for ca in TDXPCKCA.allCases {
            let crlPath = "/sgx/certification/v4/pckcrl?ca=\(ca.rawValue)&encoding=der"
            let pckCRL = try pcs(crlPath, limit: limit)
            files["pck_crl_\(ca.rawValue).der"] = pckCRL.body
            files["pck_crl_issuer_chain_\(ca.rawValue).pem"] = Array(try pcs.header("SGX-PCK-CRL-Issuer-Chain", of: pckCRL, path: crlPath).utf8)
        }
        files["root_ca_crl.der"] = try rootCRL(rootCRLPath, limit: limit).body

        var sets: [TDXPCKCA: Entry] = [:]
        for ca in TDXPCKCA.allCases {
            let collateral: TDXCollateral
            let validUntil: Date
            do {
                collateral = try TDXCollateralDirectory.pcsFiles(names: Set(files.keys), ca: ca) { files[$0] }
                validUntil = try Self.validUntil(collateral)
            } catch {
                throw pcs.invalid("TDX collateral (signed JSON, PEM chains, CRLs)", path: tcbPath, error)
            }
            guard now < validUntil else {
                throw VouchError(.collateralResponseInvalid, "Intel PCS served TDX collateral that has already expired",
                                 context: ["fmspc": fmspcHex, "got": validUntil.iso8601])
            }
            sets[ca] = Entry(collateral: collateral, validUntil: validUntil, fetchedAt: now)
            // CRLs are cached as DER whatever PCS sent (PEM, hex DER).
            files["pck_crl_\(ca.rawValue).der"] = collateral.pckCRL
            files["root_ca_crl.der"] = collateral.rootCACRL
        }
        entries.withLock { e in
            if e.count >= 1024 { e.removeAll() }
            for (ca, entry) in sets { e["\(fmspcHex)/\(ca.rawValue)"] = entry }
        }
        do { try CacheFiles.publish(files, as: fmspcHex, in: directory, fetchedAt: now) } catch {
            log("TDX collateral for FMSPC \(fmspcHex) fetched but not cached: \(error)")
        }
        return sets.mapValues(\.collateral)
    }

    /// The cached generation for `fmspc` (hex) as the set for `ca`, when it holds `ca`'s PCK CRL
    /// and parses: the link is followed once and every file read from the generation it named.
    private func loadCached(_ fmspc: String, ca: TDXPCKCA) -> Entry? {
        guard let folder = TDXCollateralDirectory.resolved(directory.appendingPathComponent(fmspc, isDirectory: true)) else { return nil }
        let names = Set((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
        guard names.contains("pck_crl_\(ca.rawValue).der"),
              let collateral = try? TDXCollateralDirectory.pcsFiles(names: names, ca: ca, read: { CacheFiles.read(folder.appendingPathComponent($0), limit: TDXCollateral.maxFieldBytes) }),
              let validUntil = try? Self.validUntil(collateral) else { return nil }
        let entry = Entry(collateral: collateral, validUntil: validUntil, fetchedAt: CacheFiles.fetchedAt(generation: folder.lastPathComponent, of: fmspc))
        entries.withLock { $0["\(fmspc)/\(ca.rawValue)"] = entry }
        return entry
    }

    /// The earliest nextUpdate of the parts (each parsed: what does not parse throws).
    static func validUntil(_ c: TDXCollateral) throws -> Date {
        let tcb = try TDXTCBInfo(json: c.tcbInfo.bytes), qe = try TDXQEIdentity(json: c.qeIdentity.bytes)
        let pck = try CRL(der: c.pckCRL), root = try CRL(der: c.rootCACRL)
        return [tcb.nextUpdate, qe.nextUpdate, pck.nextUpdate, root.nextUpdate].min()!
    }
}
