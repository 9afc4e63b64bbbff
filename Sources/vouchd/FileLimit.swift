import Foundation
import VouchRuntime

/// The process's open-file limit (RLIMIT_NOFILE), raised for the HTTPS API's connections: each
/// kept-alive connection is a descriptor, and a fleet keeps one per host. The soft limit is
/// raised to the hard one (an unprivileged process may); a hard limit below what the listeners
/// are configured for is logged as a warning, since libmicrohttpd would then stop accepting at
/// that many descriptors, not at `max-connections`.
enum FileLimit {
    /// Descriptors besides the connections counted (the listeners' and the kept pull
    /// connections): the store, log files, pulls beyond the kept ones, webhook and collateral
    /// transfers.
    static let reserve = 256

    /// Raises the soft limit to the hard one; returns the soft limit in force afterwards.
    @discardableResult
    static func raise(forConnections connections: Int) -> Int {
        guard let (before, soft) = Runtime.raiseOpenFileLimit() else {
            Runtime.log("WARNING: the open-file limit could not be read (errno \(errno)); \(connections) connections are configured")
            return connections
        }
        let needed = connections + reserve
        let shown = soft == Int.max ? "unlimited" : "\(soft)"
        if before != soft { Runtime.log("open-file limit raised from \(before == Int.max ? "unlimited" : "\(before)") to \(shown) (the hard limit)") }
        if soft < needed {
            Runtime.log("WARNING: the open-file limit (\(shown), the hard limit) is below the \(needed) descriptors \(connections) connections need: "
                        + "connections beyond about \(max(0, soft - reserve)) are not accepted (libmicrohttpd pauses accepting); raise the hard limit (systemd: LimitNOFILE) or lower max-connections or pull-connections")
        } else {
            Runtime.log("open-file limit \(shown): room for \(connections) connections")
        }
        return soft
    }
}
