import Foundation
import Synchronization
import VouchCore
import VouchModel
import VouchRuntime

extension ErrorCode {
    /// The store's CRL of an issuer is older than one this broker already published or saw (a
    /// database restored from an older copy): no CRL is signed from it.
    public static let crlBehind = ErrorCode("crl_behind", status: 503)
}

/// The highest CRL number this broker published or saw stored, per issuer, kept in a file beside
/// its keys (`BrokerConfig.crlWatermarkFile`; one line `<issuer> <number>` each). A database
/// restored from an older copy holds a lower number, and signing from it would publish a number a
/// second time with other contents — a CRL that may no longer list a revoked certificate. `check`
/// refuses that (`crl_behind`) until the database catches up. Without a file (tests), the numbers
/// are kept in memory only.
final class CRLWatermark: Sendable {
    let path: String?
    private let numbers: Mutex<[String: UInt64]>

    /// Why the file could not be read, if so: then nothing is signed (fail closed) until it is fixed.
    private let unreadable: VouchError?

    /// Reads `path` when it exists. A file that cannot be read or parsed does not stop the broker
    /// from answering, but every CRL signing is refused (`crl_behind`) until the file is repaired.
    init(path: String?) {
        self.path = path
        var known: [String: UInt64] = [:]
        var problem: VouchError?
        if let path, Files.exists(path) {
            do {
                for line in try Files.readString(path).split(separator: "\n") {
                    let parts = line.split(separator: " ")
                    guard parts.count == 2, let n = UInt64(parts[1]) else { throw VouchError(.config, "bad line") }
                    known[String(parts[0])] = n
                }
            } catch {
                problem = VouchError(.crlBehind, "the CRL watermark file cannot be read as '<issuer> <number>' lines; no CRL is signed until it is repaired",
                                     context: ["path": path])
            }
        }
        numbers = Mutex(known)
        unreadable = problem
    }

    /// Refuses to sign `issuer`'s CRL number `next` unless it is above every number published.
    /// A number already published is one of two things, told apart by `stored` (the store's
    /// number for the issuer now): on a store shared by replicas, another broker may have
    /// published `next` after the snapshot `next` came from, and this broker then served that
    /// CRL — the store moved on, the snapshot is stale (`revocation_plan_stale`: plan again);
    /// otherwise the store is behind what was published (`crl_behind`).
    func check(issuer: String, next: UInt64, stored: () throws -> UInt64?) throws {
        if let unreadable { throw unreadable }
        let published = numbers.withLock { $0[issuer] ?? 0 }
        guard next > published else {
            if let now = try stored(), now >= next {
                throw VouchError(.revocationPlanStale, "the CRL of this issuer changed since it was read; plan again",
                                 context: ["issuer": issuer, "stored": "\(now)", "got": "\(next - 1)"])
            }
            throw VouchError(.crlBehind, "the database's CRL of this issuer is older than one already published; restore a newer database",
                             context: ["issuer": issuer, "published": "\(published)", "got": "\(next - 1)"])
        }
    }

    /// The highest number of `issuer` published or seen (0: none). Taken before the store is read
    /// for `check(serving:issuer:readAfter:)`; throws `crl_behind` while the file is unreadable.
    func published(issuer: String) throws -> UInt64 {
        if let unreadable { throw unreadable }
        return numbers.withLock { $0[issuer] ?? 0 }
    }

    /// Refuses a store whose CRL of `issuer` has `number` (0: none) when the read that gave it
    /// started after `floor` (`published(issuer:)`) was published. The floor is taken before the
    /// read, not after it: a read made just before another replica committed a newer CRL (which
    /// the follower then raised the watermark to) is old, not behind; a read made after the
    /// watermark reached a number must find at least that number, or the store lost it.
    func check(serving number: UInt64, issuer: String, readAfter floor: UInt64) throws {
        guard number >= floor else {
            throw VouchError(.crlBehind, "the database's CRL of this issuer is older than one already published; restore a newer database",
                             context: ["issuer": issuer, "published": "\(floor)", "got": "\(number)"])
        }
    }

    /// Raises the watermark to CRLs committed or read from the store; writes the file when it moved
    /// (under the lock, so the file never goes back). A write that fails keeps the raised numbers
    /// in memory (this process stays protected) and is tried again at the next raise.
    func raise(_ crls: [CRLRecord]) {
        numbers.withLock { n in
            var moved = false
            for c in crls where c.number > n[c.issuer] ?? 0 { n[c.issuer] = c.number; moved = true }
            guard moved, let path else { return }
            let text = n.keys.sorted().map { "\($0) \(n[$0]!)\n" }.joined()
            try? Files.writeAtomically(Array(text.utf8), to: path, mode: 0o644)
        }
    }
}
