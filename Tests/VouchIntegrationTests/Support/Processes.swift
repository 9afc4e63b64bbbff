import Foundation
import VouchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Helpers for tests that start real processes (swtpm, vouchd, vouch-attester) on free ports.
enum TestEnv {
    /// The package root, found from this file's location.
    static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// Directory holding the built executables (`swift build --show-bin-path`).
    static let binDir: URL = {
        if let env = ProcessInfo.processInfo.environment["VOUCH_BIN_DIR"] { return URL(fileURLWithPath: env) }
        return packageRoot.appendingPathComponent(".build/debug")
    }()

    static func bin(_ name: String) -> String { binDir.appendingPathComponent(name).path }

    static func tempDir(_ prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A free port such that the next `count - 1` ports are free too (`VouchTestSupport.freePort`).
    static func freePorts(_ count: Int = 1) -> UInt16 {
        guard let p = try? freePort(count: count) else { fatalError("no free port found") }
        return p
    }

    static func waitForPort(_ port: UInt16, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if ok { return true }
            usleep(50_000)
        }
        return false
    }

    struct RunResult {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a command to completion and captures its output.
    @discardableResult
    static func run(_ exe: String, _ args: [String], env: [String: String] = [:], stdin: String? = nil) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe.hasPrefix("/") ? exe : "/usr/bin/env")
        p.arguments = exe.hasPrefix("/") ? args : [exe] + args
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        if let stdin {
            let inPipe = Pipe()
            p.standardInput = inPipe
            try p.run()
            inPipe.fileHandleForWriting.write(Data(stdin.utf8))
            try inPipe.fileHandleForWriting.close()
        } else {
            p.standardInput = FileHandle.nullDevice
            try p.run()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

/// A running background process, stopped (SIGTERM, then SIGKILL) when the test ends.
final class BackgroundProcess {
    let process = Process()
    let logURL: URL

    init(_ exe: String, _ args: [String], log: URL, env: [String: String] = [:]) throws {
        logURL = log
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        process.environment = environment
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let fh = try FileHandle(forWritingTo: log)
        process.standardOutput = fh
        process.standardError = fh
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits (at most `timeout` seconds) until the log contains `text`; returns whether it did.
    @discardableResult
    func waitForLog(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return true }
            if !process.isRunning { return log.contains(text) }
            usleep(50_000)
        }
        return false
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}
