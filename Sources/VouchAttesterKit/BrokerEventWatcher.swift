import Foundation
import Synchronization
import VouchCore

/// Follows the broker's event stream (`GET /v1/events`, Server-Sent Events) for what concerns
/// this host's workload identities, and tells `WorkloadIdentities` at once:
/// - `certificate.revoked` of a serial it holds: that SVID is withdrawn;
/// - `host.untrusted`, `host.blocked`, `host.deleted` for this host: every SVID is withdrawn;
/// - `host.trusted` or `host.unblocked` for this host: identities are issued again (each through
///   a fresh attested enrollment, which the broker refuses while the host is untrusted).
/// An operator's revocation withdraws that identity until the attester restarts; the broker's
/// own (`privilegeWithdrawn` for an untrusted verdict, `cessationOfOperation` for a deleted host)
/// only drop it, since the host event that follows decides.
/// It starts at the newest event (`from=latest`, where the broker's first frame carries that
/// event's id) and resumes after the last id it read (`Last-Event-ID`) when the stream breaks,
/// so no event is missed between two connections; it retries after 1 s doubling to 30 s. Events are only read here, never trusted for more than
/// withdrawing: issuing still takes a fresh attested enrollment.
public final class BrokerEventWatcher: Sendable {
    public typealias Open = @Sendable (_ path: String, _ headers: [String: String]) throws -> (next: @Sendable () throws -> [UInt8]?, cancel: @Sendable () -> Void)
    let open: Open
    let hostID: String
    let identities: WorkloadIdentities
    let log: @Sendable (String) -> Void
    private let state = Mutex<(stopped: Bool, lastID: String?, cancel: (@Sendable () -> Void)?)>((false, nil, nil))
    /// Set once the first stream is open (tests wait for it before acting).
    public let connected = Mutex(false)

    public init(hostID: String, identities: WorkloadIdentities, open: @escaping Open, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.hostID = hostID; self.identities = identities; self.open = open; self.log = log
    }

    public func start() {
        let thread = Thread { [self] in
            var delay: TimeInterval = 1
            while !state.withLock({ $0.stopped }) {
                do {
                    try follow()
                    delay = 1
                    // A stream the broker ended cleanly (a restart, a drain) is followed again after
                    // a second, not at once: a broker that ends every stream is not spun against.
                    Thread.sleep(forTimeInterval: 1)
                } catch {
                    log("workload API: the broker's event stream failed (\(error)); again in \(Int(delay)) s")
                    Thread.sleep(forTimeInterval: delay)
                    delay = min(30, delay * 2)
                }
            }
        }
        thread.name = "vouch.workload.events"
        thread.start()
    }

    public func stop() {
        let cancel = state.withLock { s -> (@Sendable () -> Void)? in
            s.stopped = true
            return s.cancel
        }
        cancel?()
    }

    private func follow() throws {
        let last = state.withLock { $0.lastID }
        let stream = try open(last == nil ? "/v1/events?from=latest" : "/v1/events", last.map { ["Last-Event-ID": $0] } ?? [:])
        state.withLock { $0.cancel = { stream.cancel() } }
        connected.withLock { $0 = true }
        var buffer: [UInt8] = []
        while let chunk = try stream.next() {
            buffer += chunk
            guard buffer.count <= 1 << 20 else { throw VouchError(.http, "an event frame longer than 1 MiB") }
            // Frames end with a blank line.
            while let end = Self.frameEnd(buffer) {
                let frame = String(decoding: buffer[..<end.start], as: UTF8.self)
                buffer.removeFirst(end.next)
                handle(frame)
            }
            if state.withLock({ $0.stopped }) { return }
        }
    }

    static func frameEnd(_ b: [UInt8]) -> (start: Int, next: Int)? {
        guard b.count >= 2 else { return nil }
        for i in 0..<(b.count - 1) where b[i] == 0x0a && b[i + 1] == 0x0a { return (i, i + 2) }
        return nil
    }

    /// One SSE frame: `id:`, `event:` and `data:` lines (comments and other fields ignored).
    public func handle(_ frame: String) {
        var id: String?, type: String?, data = ""
        for line in frame.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
            else if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
            else if line.hasPrefix("data: ") { data += line.dropFirst(6) }
        }
        if let id { state.withLock { $0.lastID = id } }
        guard let type, let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any],
              let fields = object["data"] as? [String: Any] else { return }
        let host = fields["hostId"] as? String
        switch type {
        case "certificate.revoked":
            // The broker's own revocations (an untrusted verdict: privilegeWithdrawn; a deleted
            // host: cessationOfOperation) come with their host event; an operator's withdraws the identity.
            let automatic = ["privilegeWithdrawn", "cessationOfOperation"].contains(fields["reason"] as? String ?? "")
            if host == hostID, let serial = fields["serial"] as? String { identities.revoked(serial: serial, withdraw: !automatic) }
        case "host.untrusted", "host.blocked", "host.deleted":
            if host == hostID { identities.hostUntrusted("the broker reported \(type)") }
        case "host.trusted", "host.unblocked":
            if host == hostID { identities.hostTrustedAgain() }
        default:
            break
        }
    }
}
