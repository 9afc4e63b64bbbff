import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum Files {
    /// Writes `bytes` to a new file with `mode` (0600 for secrets), atomically: the data goes to
    /// a temporary file in the same directory that is fsynced and renamed into place.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VouchError(.io, "cannot create \(tmp)", context: ["errno": "\(errno)"]) }
        var ok = fchmod(fd, mode) == 0
        var written = 0
        while ok && written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n <= 0 { ok = false } else { written += n }
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw VouchError(.io, "cannot write \(path)", context: ["errno": "\(e)"])
        }
    }

    public static func read(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw VouchError(.io, "cannot read \(path)", context: ["path": path])
        }
        return [UInt8](d)
    }

    public static func readString(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    public static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    public static func makeDirectory(_ path: String, mode: Int = 0o700) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw VouchError(.io, "cannot create directory \(path)", context: ["path": path])
        }
    }
}

public enum Runtime {
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
