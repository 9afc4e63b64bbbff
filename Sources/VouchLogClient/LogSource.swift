import Foundation
import VouchCore

extension ErrorCode {
    /// A log resource (checkpoint, tile, entry bundle) that could not be fetched: missing, an HTTP
    /// status other than 200, a transfer failure, or over its size bound.
    public static let logFetchFailed = ErrorCode("log_fetch_failed", status: 502)
    /// Log data that does not match the log's signed checkpoint: a tile or entry bundle whose
    /// hashes do not lead to the checkpoint's root, or a checkpoint for another origin.
    public static let logDataInvalid = ErrorCode("log_data_invalid", status: 422)
}

/// Where a C2SP tlog-tiles log is read from: a URL prefix or a directory holding the same paths
/// (`checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`). Every read is bounded.
public protocol LogSource: Sendable {
    /// The bytes at `path` (relative, no leading slash), at most `maxBytes` of them; a missing
    /// resource or any failure throws `log_fetch_failed`.
    func fetch(_ path: String, maxBytes: Int) throws -> [UInt8]
    /// What to call the source in messages and state.
    var location: String { get }
}

/// Bounds on what a log client reads.
public enum LogLimits {
    /// A checkpoint note with its signatures (the broker's own bound on notes is 1 MiB; real
    /// checkpoints with a few cosignatures are under 2 KiB).
    public static let maxCheckpointBytes = 64 * 1024
    /// A full tile: 256 hashes of 32 bytes.
    public static let maxTileBytes = 256 * 32
    /// An entry bundle: 256 entries of at most 65535 bytes each, with their length prefixes.
    public static let maxBundleBytes = 256 * (2 + 65535)
}

/// A log served over HTTP(S): GETs `<base>/<path>` through the injected transport (the vouch
/// CLI passes VouchHTTPClient with the broker CA pinned).
public struct HTTPLogSource: LogSource {
    public let transport: any HTTPTransport
    public let location: String

    public init(transport: any HTTPTransport, location: String) {
        self.transport = transport
        self.location = location
    }

    public func fetch(_ path: String, maxBytes: Int) throws -> [UInt8] {
        let response: HTTPResponse
        do {
            response = try transport.send("GET", "/" + path, headers: [:], body: nil)
        } catch {
            throw VouchError(.logFetchFailed, "cannot fetch \(path) from \(location): \(error)", context: ["path": path])
        }
        guard response.status == 200 else {
            throw VouchError(.logFetchFailed, "\(location) answered HTTP \(response.status) for \(path)", context: ["path": path, "status": "\(response.status)"])
        }
        guard response.body.count <= maxBytes else {
            throw VouchError(.logFetchFailed, "\(path) from \(location) is over \(maxBytes) bytes", context: ["path": path])
        }
        return response.body
    }
}

/// A log kept as static files in a directory (a mirror, or a test's log).
public struct DirectoryLogSource: LogSource {
    public let directory: String
    public var location: String { directory }

    public init(directory: String) {
        self.directory = directory
    }

    public func fetch(_ path: String, maxBytes: Int) throws -> [UInt8] {
        guard !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }), !path.hasPrefix("/") else {
            throw VouchError(.logFetchFailed, "not a log path: \(path)", context: ["path": path])
        }
        let full = directory + "/" + path
        guard let handle = FileHandle(forReadingAtPath: full) else {
            throw VouchError(.logFetchFailed, "\(full) is missing or unreadable", context: ["path": path])
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: maxBytes + 1) ?? Data() } catch {
            throw VouchError(.logFetchFailed, "cannot read \(full)", context: ["path": path])
        }
        guard data.count <= maxBytes else {
            throw VouchError(.logFetchFailed, "\(full) is over \(maxBytes) bytes", context: ["path": path])
        }
        return [UInt8](data)
    }
}
