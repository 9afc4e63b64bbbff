import Foundation
import VouchAttestation
import VouchCollateral
import VouchHTTPClient

/// `--fetch-collateral intel,amd` and its companions: which vendors' services the broker may ask
/// for collateral a piece of evidence did not bring, where they are, and the cache the fetchers
/// keep (`IntelPCSFetcher` in `CACHE/tdx`, `AMDKDSFetcher` in `CACHE/sev-snp`). Off unless asked.
struct CollateralFetching {
    static let options: Set<String> = ["fetch-collateral", "collateral-cache", "intel-pcs-url", "intel-root-ca-crl-url", "amd-kds-url"]
    static let intelPCS = "https://api.trustedservices.intel.com"
    static let intelRootCACRL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    static let amdKDS = "https://kdsintf.amd.com"

    let cache: URL
    /// The PCS base URL, and the root CA CRL's as a base URL and a path.
    let intel: (pcs: String, rootBase: String, rootPath: String)?
    let amd: String?

    /// Nil when `fetch-collateral` is not set (and then none of its companions may be).
    init?(_ args: Settings, dataDir: String) {
        guard let vendors = args["fetch-collateral"] else {
            if let stray = Self.options.sorted().first(where: { args[$0] != nil }) {
                fail("\(args.source(stray)): \(stray) needs fetch-collateral")
            }
            return nil
        }
        let list = vendors.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !list.isEmpty, list.allSatisfy({ ["intel", "amd"].contains($0) }), Set(list).count == list.count else {
            fail("\(args.source("fetch-collateral")): fetch-collateral must be intel, amd or intel,amd")
        }
        func url(_ name: String, _ fallback: String, vendor: String) -> String {
            guard let value = args[name] else { return fallback }
            guard list.contains(vendor) else { fail("\(args.source(name)): \(name) needs fetch-collateral \(vendor)") }
            if let problem = HTTPClient.serviceBaseURLProblem(value) { fail("\(args.source(name)): \(name) refused: \(problem)") }
            return value
        }
        let cache = args["collateral-cache"] ?? dataDir + "/collateral"
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: cache, isDirectory: &isDirectory), !isDirectory.boolValue {
            fail("\(args.source("collateral-cache")): collateral-cache must be a directory (created when missing)")
        }
        self.cache = URL(fileURLWithPath: cache)
        if list.contains("intel") {
            if args["tdx-collateral"] != nil {
                fail("\(args.source("tdx-collateral")): tdx-collateral is read-only collateral; with fetch-collateral intel the fetcher's cache (collateral-cache) is used instead")
            }
            let root = url("intel-root-ca-crl-url", Self.intelRootCACRL, vendor: "intel")
            guard let c = URLComponents(string: root), !c.percentEncodedPath.isEmpty, c.percentEncodedPath != "/",
                  let base = root.range(of: c.percentEncodedPath, options: .backwards).map({ String(root[..<$0.lowerBound]) }),
                  HTTPClient.serviceBaseURLProblem(base) == nil else {
                fail("\(args.source("intel-root-ca-crl-url")): intel-root-ca-crl-url must be an https URL (http to a loopback address) with a path")
            }
            intel = (url("intel-pcs-url", Self.intelPCS, vendor: "intel"), base, c.percentEncodedPath)
        } else {
            _ = url("intel-pcs-url", "", vendor: "intel")
            _ = url("intel-root-ca-crl-url", "", vendor: "intel")
            intel = nil
        }
        if list.contains("amd") {
            amd = url("amd-kds-url", Self.amdKDS, vendor: "amd")
        } else {
            _ = url("amd-kds-url", "", vendor: "amd")
            amd = nil
        }
    }

    /// The fetchers, into `tee` (nothing is created or asked here: the cache directories appear
    /// with the first fetch).
    func install(into tee: inout TEETrust, log: @escaping @Sendable (String) -> Void) {
        // A transfer larger than the fetchers take is cut off, not downloaded and then refused.
        let limits = CollateralFetchLimits()
        func client(_ base: String) -> HTTPClient { HTTPClient(.service(baseURL: base), timeoutSeconds: 10, maxResponseBytes: limits.maxResponseBytes) }
        if let intel {
            tee.tdxCollateral = IntelPCSFetcher(directory: cache.appendingPathComponent("tdx"), pcs: client(intel.pcs), rootCACRL: client(intel.rootBase),
                                                rootCACRLPath: intel.rootPath, limits: limits, log: log)
        }
        if let amd {
            tee.snpEndorsements = AMDKDSFetcher(directory: cache.appendingPathComponent("sev-snp"), kds: client(amd), limits: limits, log: log)
        }
    }

    /// For the start's log line.
    var summary: String {
        var parts: [String] = []
        if let intel { parts.append("Intel PCS \(intel.pcs) (root CA CRL \(intel.rootBase)\(intel.rootPath))") }
        if let amd { parts.append("AMD KDS \(amd)") }
        return "collateral fetched on demand from \(parts.joined(separator: " and ")), cached in \(cache.path)"
    }
}
