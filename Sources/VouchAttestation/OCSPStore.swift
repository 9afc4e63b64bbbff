import Foundation
import VouchCore
import VouchCrypto

extension ErrorCode {
    /// A verified OCSP answer says a certificate of the chain is revoked.
    public static let certificateRevokedOCSP = ErrorCode("certificate_revoked_ocsp", status: 403)
    /// No verified, current OCSP answer says a certificate of the chain is good (none stored, every
    /// stored one refused, or the responder answered `unknown`): never taken as a pass.
    public static let revocationStatusUnknown = ErrorCode("revocation_status_unknown", status: 403)
}

/// What the store knows about one (certificate, issuer) pair at a time T.
public enum RevocationOutcome: Sendable, Equatable {
    /// A verified, current answer: good, revoked, or unknown to the responder.
    case answered(OCSPCertificateStatus)
    /// No verified answer for the pair. `refused`: the codes of stored responses that name the
    /// pair but were refused (bad signature, expired, not yet valid), in file-name order.
    case missing(refused: [ErrorCode])

    var isGood: Bool { if case .answered(.good) = self { true } else { false } }
    var isRevoked: Bool { if case .answered(.revoked) = self { true } else { false } }
}

/// A local store of DER OCSPResponses: every regular file of one directory (at most `maxFiles`,
/// each at most `OCSPClient.maxResponseBytes`), read once when the store is made. A file that
/// cannot be read or is not a well-formed, successful OCSPResponse is listed in `problems` and
/// never used. Lookups verify each stored response against the pair at the lookup time.
public struct OCSPStore: Sendable {
    public static let maxFiles = 512

    /// A file the store did not take, and why.
    public struct Problem: Sendable, Equatable {
        public let file: String
        public let code: ErrorCode
        public let message: String
    }

    public let problems: [Problem]
    private let responses: [(file: String, der: [UInt8])]
    /// Certificate serial → the indices of the responses naming it (`OCSPClient.serials`), so a
    /// lookup verifies only the answers that may be about its certificate.
    private let bySerial: [String: [Int]]

    /// Responses given in memory (name, DER): malformed ones are listed in `problems`.
    public init(responses: [(name: String, der: [UInt8])]) {
        var kept: [(file: String, der: [UInt8])] = []
        var problems: [Problem] = []
        for (name, der) in responses.sorted(by: { $0.name < $1.name }) {
            do {
                try OCSPClient.checkWellFormed(der)
                kept.append((name, der))
            } catch let e as VouchError {
                problems.append(Problem(file: name, code: e.code, message: e.message))
            } catch {
                problems.append(Problem(file: name, code: .ocspResponseMalformed, message: "\(error)"))
            }
        }
        self.responses = kept
        self.problems = problems
        bySerial = Self.index(kept)
    }

    static func index(_ responses: [(file: String, der: [UInt8])]) -> [String: [Int]] {
        var index: [String: [Int]] = [:]
        for (i, r) in responses.enumerated() {
            for serial in OCSPClient.serials(of: r.der) { index[serial, default: []].append(i) }
        }
        return index
    }

    /// Reads every regular file of `directory` (hidden files skipped). Throws `config` when the
    /// directory cannot be listed or holds more than `maxFiles` files; a file over the size cap or
    /// unreadable is a problem, not a failure.
    public init(directory: URL) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw VouchError(.config, "the OCSP response directory cannot be read", context: ["path": directory.path])
        }
        let files = names.filter { !$0.hasPrefix(".") }.sorted()
        guard files.count <= Self.maxFiles else {
            throw VouchError(.config, "the OCSP response directory holds too many files",
                             context: ["path": directory.path, "files": "\(files.count)", "max": "\(Self.maxFiles)"])
        }
        var loaded: [(name: String, der: [UInt8])] = []
        var unreadable: [Problem] = []
        for name in files {
            let url = directory.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let size = (try? fm.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? -1
            guard size >= 0, size <= OCSPClient.maxResponseBytes, let data = try? Data(contentsOf: url), data.count <= OCSPClient.maxResponseBytes else {
                unreadable.append(Problem(file: name, code: .ocspResponseMalformed,
                                          message: size > OCSPClient.maxResponseBytes ? "over the size cap" : "unreadable"))
                continue
            }
            loaded.append((name, Array(data)))
        }
        let store = OCSPStore(responses: loaded)
        self.responses = store.responses
        self.problems = (unreadable + store.problems).sorted { $0.file < $1.file }
        bySerial = store.bySerial
    }

    /// The number of responses the store took.
    public var count: Int { responses.count }

    /// Every stored response naming the certificate's serial is tried for the pair. A verified `revoked` wins over anything else;
    /// then the verified `good` answer with the latest thisUpdate; then `unknown`; else `missing`
    /// with the codes of the responses that named the pair but were refused.
    public func status(of certificate: Certificate, issuer: Certificate, at: Date) -> RevocationOutcome {
        var goods: [(Date, Date)] = []
        var sawUnknown = false
        var refused: [ErrorCode] = []
        for i in bySerial[certificate.serialHex] ?? [] {
            let der = responses[i].der
            do {
                switch try OCSPClient.verify(response: der, certificate: certificate, issuer: issuer, at: at) {
                case let .revoked(when, reason): return .answered(.revoked(at: when, reason: reason))
                case let .good(thisUpdate, nextUpdate): goods.append((thisUpdate, nextUpdate))
                case .unknown: sawUnknown = true
                }
            } catch let e as VouchError where e.code == .ocspResponseNotForCertificate {
                continue
            } catch let e as VouchError {
                refused.append(e.code)
            } catch {
                refused.append(.ocspResponseMalformed)
            }
        }
        if let latest = goods.max(by: { $0.0 < $1.0 }) { return .answered(.good(thisUpdate: latest.0, nextUpdate: latest.1)) }
        return sawUnknown ? .answered(.unknown) : .missing(refused: refused)
    }
}

/// Revocation of a whole certificate chain by OCSP answers from a store.
public enum ChainRevocation {
    /// One certificate's outcome; `index` is its place in the chain (0 = leaf).
    public struct Entry: Sendable, Equatable {
        public let index: Int
        public let subject: String
        public let serialHex: String
        public let outcome: RevocationOutcome
    }

    public enum Summary: Sendable, Equatable {
        /// Every checked certificate has a verified, current `good` answer.
        case allGood
        /// At least one certificate is revoked (whatever the others say).
        case someRevoked
        /// None revoked, but at least one has no verified `good` answer (missing or `unknown`).
        case someMissing
    }

    public struct Result: Sendable, Equatable {
        public let entries: [Entry]

        public var summary: Summary {
            if entries.contains(where: { $0.outcome.isRevoked }) { return .someRevoked }
            if entries.allSatisfy({ $0.outcome.isGood }) { return .allGood }
            return .someMissing
        }

        /// Throws `certificate_revoked_ocsp` or `revocation_status_unknown` (naming the first such
        /// certificate and `chain`, e.g. "nvidia-gpu" or "nvidia-rim") unless the summary is `allGood`.
        public func requireAllGood(chain: String) throws {
            switch summary {
            case .allGood:
                return
            case .someRevoked:
                let e = entries.first { $0.outcome.isRevoked }!
                throw VouchError(.certificateRevokedOCSP, "an OCSP answer says a certificate of the \(chain) chain is revoked",
                                 context: ["chain": chain, "subject": e.subject, "serial": e.serialHex, "index": "\(e.index)"])
            case .someMissing:
                let e = entries.first { !$0.outcome.isGood }!
                var context = ["chain": chain, "subject": e.subject, "serial": e.serialHex, "index": "\(e.index)"]
                if case let .missing(refused) = e.outcome, !refused.isEmpty { context["refused"] = refused.map(\.rawValue).joined(separator: ",") }
                if case .answered(.unknown) = e.outcome { context["responder"] = "unknown" }
                throw VouchError(.revocationStatusUnknown, "no current, verified OCSP answer says a certificate of the \(chain) chain is good",
                                 context: context)
            }
        }
    }

    /// Checks every certificate of `chain` (leaf first, root last) against its successor as issuer,
    /// except a self-signed last certificate (the pinned root, which no OCSP answer covers). A last
    /// certificate that is not self-signed has no issuer here: it is reported `missing`. The chain
    /// itself must already be verified (signatures, validity, pinned root) by the caller.
    /// `skipLeaf`: leave the first certificate out — for an NVIDIA GPU's device chain, whose leaf
    /// is the attestation certificate the GPU issues itself, which NVIDIA's responder does not
    /// answer for (NVIDIA's own verifier starts at the second certificate there; RIM chains are
    /// checked from the leaf).
    public static func check(chain: [Certificate], store: OCSPStore, at: Date, skipLeaf: Bool = false) throws -> Result {
        guard chain.count > (skipLeaf ? 1 : 0) else {
            throw VouchError(.invalidValue, "the certificate chain has nothing to check", context: ["field": "chain"])
        }
        var entries: [Entry] = []
        for (i, cert) in chain.enumerated() where i > 0 || !skipLeaf {
            let outcome: RevocationOutcome
            if i + 1 < chain.count {
                outcome = store.status(of: cert, issuer: chain[i + 1], at: at)
            } else if cert.isSelfSigned {
                continue
            } else {
                outcome = .missing(refused: [])
            }
            entries.append(Entry(index: i, subject: cert.subject, serialHex: cert.serialHex, outcome: outcome))
        }
        return Result(entries: entries)
    }
}
