import Foundation

/// A throwaway Python virtualenv for interop tests that drive Vouch with a third-party Python
/// library from PyPI: made once under the temporary directory (by `name`) with `packages` pinned,
/// and made again when `probe` (an import line) no longer runs in it.
public enum PythonVenv {
    /// The venv's python, creating the venv and installing `packages` when needed.
    /// `pipOptions` go before the packages (e.g. `--ignore-requires-python`).
    public static func python(_ name: String, packages: [String], probe: String, pipOptions: [String] = []) throws -> String {
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        let python = venv + "/bin/python"
        if FileManager.default.fileExists(atPath: python), (try? run(python, ["-c", probe]))?.status == 0 { return python }
        let made = try run("/usr/bin/python3", ["-m", "venv", "--clear", venv])
        guard made.status == 0 else { throw TestFailure("python3 -m venv failed (make deps installs python3-venv): \(made.stderr)") }
        let pip = try run(venv + "/bin/pip", ["install", "-q", "--disable-pip-version-check"] + pipOptions + packages)
        guard pip.status == 0 else { throw TestFailure("\(packages.joined(separator: " ")) could not be installed from PyPI: \(pip.stderr.suffix(300))") }
        return python
    }

    public struct Result: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Runs `exe` with `args` to completion (stdin empty), capturing its output.
    public static func run(_ exe: String, _ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // stderr is read on another thread so that neither pipe can fill while the other is read.
        let errData = ErrBox()
        let reader = Thread { errData.data = err.fileHandleForReading.readDataToEndOfFile(); errData.done.signal() }
        reader.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        errData.done.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData.data, as: UTF8.self))
    }

    private final class ErrBox: @unchecked Sendable {
        var data = Data()
        let done = DispatchSemaphore(value: 0)
    }
}
