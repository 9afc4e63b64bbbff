import Dispatch
import Foundation
import Synchronization
import VouchCore
#if canImport(Glibc)
import Glibc
#endif

/// The process: termination signals and the process-wide log (its format and standard error).
/// Services take a `log` closure and executables pass `Runtime.log`; VouchHTTPServer calls it
/// directly from libmicrohttpd's C callbacks, which carry no closure.
public enum Runtime {
    /// Raises the open-file soft limit (RLIMIT_NOFILE) to the hard one, as an unprivileged
    /// process may, for processes that hold a descriptor per connection. Returns the soft limit
    /// before and after (`RLIM_INFINITY` becomes `Int.max`), or nil if it cannot be read.
    @discardableResult
    public static func raiseOpenFileLimit() -> (before: Int, after: Int)? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let before = Int(clamping: limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return (before, Int(clamping: limit.rlim_cur))
    }

    /// Blocks until SIGINT or SIGTERM arrives.
    public static func waitForTermination() {
        let done = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "vouch.signals")
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler { done.signal() }
            s.resume()
            sources.append(s)
        }
        done.wait()
        sources.forEach { $0.cancel() }
    }

    public enum LogFormat: Sendable { case text, json }
    private static let format = Mutex(LogFormat.text)

    /// Chooses how `log` writes (once, at startup).
    public static func setLogFormat(_ f: LogFormat) { format.withLock { $0 = f } }

    /// Writes one line to standard error: "TIME message", or with the json format one object
    /// {"ts","level","msg"} per line (level warn for lines starting "WARNING", else info).
    public static func log(_ line: String) { log(line, level: nil) }

    /// As `log`, with an explicit level for the json format ("debug", "info", "warn", "error").
    public static func log(_ line: String, level: String?) {
        let now = Date()
        switch format.withLock({ $0 }) {
        case .text:
            FileHandle.standardError.write(Data((now.iso8601 + " " + line + "\n").utf8))
        case .json:
            let level = level ?? (line.hasPrefix("WARNING") ? "warn" : "info")
            let object: [String: String] = ["ts": String(format: "%.3f", now.timeIntervalSince1970), "time": now.iso8601, "level": level, "msg": line]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            FileHandle.standardError.write(data + Data("\n".utf8))
        }
    }
}
