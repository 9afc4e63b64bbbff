import Foundation
import Synchronization
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// SEV-SNP endorsements from AMD's Key Distribution Service, kept in an on-disk cache:
/// - the VCEK of a chip at a TCB: `/vcek/v1/<Milan|Genoa|Turin>/<hwid>?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…`
///   (Turin: `fmcSPL=…` first, and the hwid is the first 8 bytes of CHIP_ID; Milan and Genoa take
///   all 64), decimal SPLs from REPORTED_TCB in the product's layout; DER (PEM also taken),
///   cached as `<Product>/<hwid hex>/<REPORTED_TCB, 16 hex digits>.der` until its notAfter;
/// - the product line's CRLs, both the ARK's: revoked ASKs at `/vcek/v1/<Product>/crl` (for
///   VCEK-signed reports, cached as `<Product>/crl.der`) and revoked ASVKs at
///   `/vlek/v1/<Product>/crl` (VLEK-signed, `<Product>/vlek-crl.der`); refreshed after
///   `refreshAfter` and always once its nextUpdate has passed (never served stale).
/// VLEKs are not fetchable: AMD hands them to cloud providers, who install them in the
/// hypervisor; a VLEK-signed report must bring its VLEK. The ARK and ASK/ASVK are compiled in and
/// pinned (`AMDRoots`), so `cert_chain` is not fetched. Bodies are bounded and parsed (a
/// certificate with readable AMD extensions, a CRL); nothing is verified here — `SNPVerifier`
/// checks the VCEK's chain, hwID and TCB against the report, and the CRL's signature and window.
/// A failed fetch is logged and gives nil. The fetch gate (`CollateralFetchLimits`) allows one
/// fetch per chip and TCB (or CRL) per `minInterval`, none for a chip and TCB KDS answered 404
/// for during `notFoundInterval`, and keeps the VCEKs of chips never cached on a budget of their
/// own, apart from known chips' and from the CRLs (which have none): a report's CHIP_ID and TCB
/// are the host's to choose, and made-up ones must not starve the CRL refreshes revocation
/// checks depend on.
public final class AMDKDSFetcher: SNPEndorsementSource {
    /// The cache: one directory per product line.
    public let directory: URL
    let kds: ServiceGet
    let gate: FetchGate
    let log: @Sendable (String) -> Void

    private struct Cached {
        let der: [UInt8]
        /// VCEK: its notAfter; CRL: its nextUpdate.
        let validUntil: Date
        /// CRL: its thisUpdate (not served before it).
        let validFrom: Date
        let fetchedAt: Date?
    }
    private let cached = Mutex<[String: Cached]>([:])
    /// `<Product>/<hwid hex>` of the chips a VCEK was fetched or read for.
    private let knownChips = Mutex<Set<String>>([])

    /// `kds` carries requests to the KDS base URL (`HTTPClient(.service(baseURL:))`); `log` hears
    /// of failed fetches.
    public init(directory: URL, kds: any HTTPTransport, limits: CollateralFetchLimits = CollateralFetchLimits(),
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.directory = directory
        self.kds = ServiceGet(transport: kds, service: "AMD KDS")
        self.gate = FetchGate(limits: limits)
        self.log = log
    }

    public func vcek(_ request: SNPVCEKRequest, at now: Date) -> [UInt8]? {
        for product in request.products {
            let file = Self.vcekFile(product: product, chipID: request.chipID, tcb: request.reportedTCB)
            let chip = Self.chipDirectory(product: product, chipID: request.chipID)
            let budget: FetchGate.Budget = isKnown(chip) ? .shared : .newChips
            if let der = cachedOrFetched(file, kind: .vcek, at: now, refresh: false, budget: budget, fetch: {
                try self.fetchVCEK(product: product, chipID: request.chipID, reportedTCB: request.reportedTCB, at: now)
            }) {
                return der
            }
        }
        return nil
    }

    public func crl(product: SNPProduct, signer: SNPSigningKey, at now: Date) -> [UInt8]? {
        guard signer != .none else { return nil }
        return cachedOrFetched(Self.crlFile(product: product, signer: signer), kind: .crl, at: now, refresh: true, budget: .keyOnly,
                               fetch: { try self.fetchCRL(product: product, signer: signer, at: now) })
    }

    /// Fetches the VCEK now (no gate), caches it and returns its DER. Throws
    /// `collateral_fetch_failed`, `collateral_response_invalid` (nothing cached).
    @discardableResult
    public func fetchVCEK(product: SNPProduct, chipID: [UInt8], reportedTCB: SNPTCBVersion, at now: Date) throws -> [UInt8] {
        let path = Self.vcekPath(product: product, chipID: chipID, tcb: reportedTCB)
        let body = try kds(path, limit: gate.limits.maxResponseBytes).body
        let certificate: Certificate
        do {
            certificate = body.first == 0x30 ? try Certificate(der: body) : try Certificate(pem: String(decoding: body, as: UTF8.self))
            _ = try SNPEndorsementExtensions(extensionValue: certificate.extensionValue(oid:))
        } catch {
            throw kds.invalid("a VCEK certificate", path: path, error)
        }
        let der = try certificate.der
        guard now < certificate.notAfter else {
            throw VouchError(.collateralResponseInvalid, "AMD KDS served a VCEK that has expired", context: ["path": path, "got": certificate.notAfter.iso8601])
        }
        store(Self.vcekFile(product: product, chipID: chipID, tcb: reportedTCB),
              Cached(der: der, validUntil: certificate.notAfter, validFrom: .distantPast, fetchedAt: now))
        return der
    }

    /// Fetches the product line's CRL for `signer` now (no gate) — the ASK list for VCEKs, the
    /// ASVK list for VLEKs — caches it and returns its DER; throws as `fetchVCEK` does (a CRL whose
    /// window does not hold `now` is `collateral_response_invalid`).
    @discardableResult
    public func fetchCRL(product: SNPProduct, signer: SNPSigningKey, at now: Date) throws -> [UInt8] {
        let path = "/\(signer == .vlek ? "vlek" : "vcek")/v1/\(product.rawValue)/crl"
        let body = try kds(path, limit: gate.limits.maxResponseBytes).body
        let der: [UInt8], crl: CRL
        do {
            der = try TDXCollateral.crlBytes(body, field: "crl")
            crl = try CRL(der: der)
        } catch {
            throw kds.invalid("a CRL", path: path, error)
        }
        guard crl.thisUpdate <= now, now < crl.nextUpdate else {
            throw VouchError(.collateralResponseInvalid, "AMD KDS served a CRL that is not current", context: ["path": path, "got": "\(crl.thisUpdate.iso8601)..\(crl.nextUpdate.iso8601)"])
        }
        store(Self.crlFile(product: product, signer: signer), Cached(der: der, validUntil: crl.nextUpdate, validFrom: crl.thisUpdate, fetchedAt: now))
        return der
    }

    private enum Kind { case vcek, crl }

    /// The cached bytes at `file` while current at `now` (and, with `refresh`, younger than
    /// `refreshAfter`); else a fetch when the gate allows, falling back to the current cached bytes.
    /// A 404 holds the key off for `notFoundInterval`.
    private func cachedOrFetched(_ file: String, kind: Kind, at now: Date, refresh: Bool, budget: FetchGate.Budget,
                                 fetch: () throws -> [UInt8]) -> [UInt8]? {
        gate.serialized(file) {
            let entry = cached.withLock { $0[file] } ?? load(file, kind: kind)
            let usable = entry.flatMap { $0.validFrom <= now && now < $0.validUntil ? $0 : nil }
            if let usable {
                guard refresh else { return usable.der }
                if let at = usable.fetchedAt, at <= now, now.timeIntervalSince(at) < gate.limits.refreshAfter { return usable.der }
            }
            guard gate.mayFetch(file, budget: budget, at: now) else { return usable?.der }
            do { return try fetch() } catch {
                if (error as? VouchError)?.context["status"] == "404" { gate.holdOff(file, until: now.addingTimeInterval(gate.limits.notFoundInterval)) }
                log("AMD KDS: \(file) not fetched: \(error)" + (usable == nil ? "" : "; the cached copy is used"))
                return usable?.der
            }
        }
    }

    /// Keeps `entry` in memory and on disk (a file that cannot be written is logged).
    private func store(_ file: String, _ entry: Cached) {
        cached.withLock { c in
            if c.count >= 4096 { c.removeAll() }
            c[file] = entry
        }
        remember(file)
        do { try CacheFiles.write(entry.der, to: directory.appendingPathComponent(file)) } catch {
            log("AMD KDS: \(file) fetched but not cached: \(error)")
        }
    }

    /// A cached file as it was written (a VCEK or a CRL), with its window.
    private func load(_ file: String, kind: Kind) -> Cached? {
        guard let der = CacheFiles.read(directory.appendingPathComponent(file), limit: gate.limits.maxResponseBytes) else { return nil }
        let entry: Cached
        switch kind {
        case .crl:
            guard let crl = try? CRL(der: der) else { return nil }
            entry = Cached(der: der, validUntil: crl.nextUpdate, validFrom: crl.thisUpdate, fetchedAt: nil)
        case .vcek:
            guard let certificate = try? Certificate(der: der) else { return nil }
            entry = Cached(der: der, validUntil: certificate.notAfter, validFrom: .distantPast, fetchedAt: nil)
            remember(file)
        }
        cached.withLock { $0[file] = entry }
        return entry
    }

    /// Notes the chip of a VCEK file (`<Product>/<hwid>/<tcb>.der`) as known.
    private func remember(_ file: String) {
        let parts = file.split(separator: "/")
        guard parts.count == 3 else { return }
        knownChips.withLock { k in
            if k.count >= 65_536 { k.removeAll() }
            k.insert("\(parts[0])/\(parts[1])")
        }
    }

    /// Whether the cache has held a VCEK of this chip (`<Product>/<hwid hex>`): in memory, or a
    /// directory for it on disk (written by this broker or one before it).
    private func isKnown(_ chip: String) -> Bool {
        if knownChips.withLock({ $0.contains(chip) }) { return true }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(chip).path, isDirectory: &isDirectory), isDirectory.boolValue else { return false }
        knownChips.withLock { _ = $0.insert(chip) }
        return true
    }

    /// The hwid KDS takes for a chip: Turin's is CHIP_ID's first 8 bytes, the others' all 64.
    static func hwid(product: SNPProduct, chipID: [UInt8]) -> [UInt8] {
        product == .turin ? Array(chipID.prefix(8)) : chipID
    }

    /// The KDS path of a VCEK (AMD's VCEK Certificate and KDS Interface Specification, pub. 57230).
    public static func vcekPath(product: SNPProduct, chipID: [UInt8], tcb: SNPTCBVersion) -> String {
        let c = tcb.components(for: product)
        let spls = "blSPL=\(c.bootloader)&teeSPL=\(c.tee)&snpSPL=\(c.snp)&ucodeSPL=\(c.microcode)"
        let query = product.hasFMC ? "fmcSPL=\(c.fmc ?? 0)&" + spls : spls
        return "/vcek/v1/\(product.rawValue)/\(Hex.encode(hwid(product: product, chipID: chipID)))?\(query)"
    }

    static func vcekFile(product: SNPProduct, chipID: [UInt8], tcb: SNPTCBVersion) -> String {
        let raw = String(tcb.raw, radix: 16)
        return "\(chipDirectory(product: product, chipID: chipID))/\(String(repeating: "0", count: 16 - raw.count) + raw).der"
    }

    static func chipDirectory(product: SNPProduct, chipID: [UInt8]) -> String {
        "\(product.rawValue)/\(Hex.encode(hwid(product: product, chipID: chipID)))"
    }

    static func crlFile(product: SNPProduct, signer: SNPSigningKey) -> String {
        "\(product.rawValue)/\(signer == .vlek ? "vlek-crl" : "crl").der"
    }
}
