import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchGRPC

/// Workload attestation by Unix peer credentials, like SPIRE's unix workload attestor: the
/// kernel's SO_PEERCRED (pid, uid, gid, taken when the workload connected) and what /proc says of
/// that process. The selectors, in the order they are read:
/// 1. `uid`, `gid` from the credentials; `user`, `group` their names (getpwuid_r / getgrgid_r);
/// 2. the process's start time (field 22 of /proc/PID/stat), read first and again last, and
///    equal to the one read when the connection was accepted (when the server read it), so a
///    process that exited and whose pid was reused is refused, never attested as the other;
/// 3. `supplementary_gid` / `supplementary_group` from the `Groups:` line of /proc/PID/status;
/// 4. `path`: the executable (/proc/PID/exe), and `sha256`: its digest — only when an entry
///    uses a sha256 selector, only for files up to `maxDigestBytes` (1 GiB), cached per (device,
///    inode, size, modification and change times; the change time cannot be set back) so a busy
///    agent is not hashed per call.
/// A process whose /proc entry cannot be read (gone, or another pid namespace) gets no selectors
/// beyond what the credentials give, and a refusal if the start time cannot be read.
/// Limits, as for SPIRE's unix attestor: a process that exec'd another program after it
/// connected is judged by the program it runs now; in another mount namespace `path` is that
/// namespace's path; uid and gid are the kernel's and cannot be forged.
public final class WorkloadAttestor: Sendable {
    let procRoot: String
    let digestExecutables: Bool
    let maxDigestBytes: Int64
    private let digests = Mutex<[String: String]>([:])

    public init(procRoot: String = "/proc", digestExecutables: Bool = true, maxDigestBytes: Int64 = 1 << 30) {
        self.procRoot = procRoot; self.digestExecutables = digestExecutables; self.maxDigestBytes = maxDigestBytes
    }

    /// `connectedStartTime`: the start time read when the connection was accepted (nil: unknown).
    public func selectors(pid: Int32, uid: UInt32, gid: UInt32, connectedStartTime: String? = nil) throws -> Set<WorkloadSelector> {
        let before = try startTime(pid)
        if let connectedStartTime, connectedStartTime != before {
            throw VouchError(.workloadGone, "the process that connected has exited (its pid belongs to another now)", context: ["pid": "\(pid)"])
        }
        var out: Set<WorkloadSelector> = [.init(kind: .uid, value: "\(uid)"), .init(kind: .gid, value: "\(gid)")]
        if let name = Self.userName(uid) { out.insert(.init(kind: .user, value: name)) }
        if let name = Self.groupName(gid) { out.insert(.init(kind: .group, value: name)) }
        if let status = try? String(contentsOfFile: "\(procRoot)/\(pid)/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) {
            for g in line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).prefix(256) {
                guard let id = UInt32(g) else { continue }
                out.insert(.init(kind: .supplementaryGID, value: "\(id)"))
                if let name = Self.groupName(id) { out.insert(.init(kind: .supplementaryGroup, value: name)) }
            }
        }
        let exe = "\(procRoot)/\(pid)/exe"
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: exe) {
            out.insert(.init(kind: .path, value: path))
            if digestExecutables, let digest = try? digest(exe) { out.insert(.init(kind: .sha256, value: digest)) }
        }
        guard try startTime(pid) == before else {
            throw VouchError(.workloadGone, "the workload's process ended while it was attested", context: ["pid": "\(pid)"])
        }
        return out
    }

    /// The executable's SHA-256 through /proc/PID/exe (which opens the file the process runs even
    /// when its path was replaced), cached by the file's identity.
    func digest(_ exe: String) throws -> String {
        var st = stat()
        guard stat(exe, &st) == 0 else { throw VouchError(.io, "stat \(exe) failed") }
        guard Int64(st.st_size) <= maxDigestBytes else { throw VouchError(.io, "the executable is larger than the digest limit") }
        let key = "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
        if let hit = digests.withLock({ $0[key] }) { return hit }
        let hex = Hex.encode(try Crypto.digestFile(exe).digest)
        digests.withLock { cache in
            if cache.count > 4096 { cache.removeAll() }
            cache[key] = hex
        }
        return hex
    }

    func startTime(_ pid: Int32) throws -> String {
        guard let t = PeerCredentials.processStartTime(pid: pid, procRoot: procRoot) else {
            throw VouchError(.workloadGone, "the workload's process cannot be read in \(procRoot)", context: ["pid": "\(pid)"])
        }
        return t
    }

    static func userName(_ uid: UInt32) -> String? {
        var pw = passwd(), result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil, let name = pw.pw_name else { return nil }
        return String(cString: name)
    }

    static func groupName(_ gid: UInt32) -> String? {
        var gr = group(), result: UnsafeMutablePointer<group>?
        var buf = [CChar](repeating: 0, count: 4096)
        guard getgrgid_r(gid, &gr, &buf, buf.count, &result) == 0, result != nil, let name = gr.gr_name else { return nil }
        return String(cString: name)
    }
}

extension ErrorCode {
    /// The Workload API: the calling process could not be attested (it ended, or /proc has no entry for it).
    public static let workloadGone = ErrorCode("workload_gone", status: 403)
}
