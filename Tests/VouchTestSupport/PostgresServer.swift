import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL server that a test process starts for itself, from Debian's `postgresql` package
/// (`make deps` installs it): a fresh cluster made by `initdb` in a temporary directory
/// (`vouch-pg-XXXXXX` under the temporary directory), listening on 127.0.0.1 on a free port, with
/// trust authentication for the superuser `vouch`, so tests need no installed or configured server.
///
/// The directory holds `data` (the cluster), `socket` (its Unix socket), `server.log` (the server's
/// log, `log_min_messages=warning`) and `owner` (the test process's pid and start time).
///
/// initdb and postgres refuse to run as root: under root every server command runs as Debian's
/// `postgres` system user (through `setpriv`), and the directory is that user's. psql and
/// pg_isready connect over TCP and run as whoever runs the tests.
///
/// A test run that dies must not leave servers behind: the postmaster is the test process's own
/// child, started with a parent-death signal (SIGQUIT, PostgreSQL's immediate shutdown) so that it
/// stops when the test process ends however it ends; servers still open at `exit` are shut down by
/// an `atexit` handler; and each new server first removes the directories of servers whose test
/// process is gone (stopping any postmaster still running there).
///
/// One server per test class, or `PostgresServer.shared` (one per test process) with a fresh
/// database per test from `createDatabase`.
public final class PostgresServer: @unchecked Sendable {
    /// The superuser initdb makes; every URL connects as it.
    public static let user = "vouch"

    /// The database `url` names, created when the server starts.
    public let name: String
    /// The temporary directory holding the cluster, socket, log and owner file.
    public let directory: URL
    /// Where `initdb`, `postgres`, `pg_ctl`, `pg_isready` and `psql` are.
    public let binaries: String

    private let account: ServerAccount?
    private let lock = NSLock()
    private var currentPort: UInt16 = 0
    private var postmaster: Process?
    private var closed = false

    /// A server shared by the whole test process, started on first use, for tests that each take a
    /// database of their own from `createDatabase`: `let pg = try PostgresServer.shared.get()`.
    /// A server that could not start is the same failure for every test that asks.
    public static let shared: Result<PostgresServer, TestFailure> = {
        do {
            return .success(try PostgresServer())
        } catch let failure as TestFailure {
            return .failure(failure)
        } catch {
            return .failure(TestFailure("PostgreSQL did not start: \(error)"))
        }
    }()

    /// Makes a cluster in a new temporary directory, starts it on a free port and creates the
    /// database `name` (a lower-case SQL identifier). Throws `TestFailure` when PostgreSQL is not
    /// installed or does not start, with what it printed.
    public init(name: String = "vouch") throws {
        try PostgresServer.checkIdentifier(name)
        self.name = name
        binaries = try PostgresServer.findBinaries()
        account = getuid() == 0 ? try ServerAccount.postgres() : nil
        guard FileManager.default.isExecutableFile(atPath: ServerAccount.setpriv) else {
            throw TestFailure("\(ServerAccount.setpriv) (util-linux) is missing: the server is started through it, with its parent-death signal")
        }
        PostgresServer.removeStaleDirectories()
        directory = try PostgresServer.makeDirectory()
        LiveServers.shared.add(self)
        do {
            try prepare()
            var attempts = 0
            while true {
                attempts += 1
                // Another process may take the free port before postgres binds it: try a new one.
                lock.withLock { currentPort = (try? freePort()) ?? 0 }
                do {
                    try start()
                    break
                } catch where attempts < 3 {
                    continue
                }
            }
            _ = try createDatabase(name)
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// The TCP port on 127.0.0.1 the server listens on.
    public var port: UInt16 { lock.withLock { currentPort } }

    /// `postgres://vouch@127.0.0.1:PORT/NAME`: the server's own database.
    public var url: String { url(database: name) }

    /// The URL of `database` on this server.
    public func url(database: String) -> String { "postgres://\(Self.user)@127.0.0.1:\(port)/\(database)" }

    /// Creates an empty database (`name`: a lower-case SQL identifier) and returns its URL, so that
    /// each test can have a database nothing else touches.
    public func createDatabase(_ name: String) throws -> String {
        try Self.checkIdentifier(name)
        try psql("CREATE DATABASE \"\(name)\"", database: "postgres")
        return url(database: name)
    }

    /// Runs `sql` with psql (`-At`: unaligned, tuples only, so columns are joined by `|` and rows by
    /// newlines) in `database` (default: `name`) and returns what it printed, less the last newline.
    /// Stops at the first error and throws it.
    @discardableResult
    public func psql(_ sql: String, database: String? = nil) throws -> String {
        let r = try execute(binaries + "/psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port),
                                                 "-U", Self.user, "-d", database ?? name, "-c", sql])
        guard r.status == 0 else { throw TestFailure("psql exited \(r.status) on \(sql.prefix(200)): \(r.stderr)") }
        return r.stdout.hasSuffix("\n") ? String(r.stdout.dropLast()) : r.stdout
    }

    /// Starts the server (nothing when it runs) and returns once it accepts connections, after
    /// crash recovery if it was killed; throws with the log's end if it exits or is not ready in 30 s.
    public func start() throws {
        try lock.withLock {
            guard !closed else { throw TestFailure("PostgresServer \(directory.path) was shut down") }
            if let p = postmaster, p.isRunning { return }
            postmaster = nil
            let log = try openLog()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ServerAccount.setpriv)
            process.arguments = (account?.setprivArguments ?? []) + ["--pdeathsig", "SIGQUIT", "--", binaries + "/postgres", "-D", dataPath,
                                                                     "-p", String(currentPort)]
            process.environment = Self.environment
            process.currentDirectoryURL = directory
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = log
            process.standardError = log
            defer { try? log.close() }
            try SpawnThread.shared.run(process)
            postmaster = process
            let deadline = Date().addingTimeInterval(30)
            while true {
                guard process.isRunning else {
                    postmaster = nil
                    throw TestFailure("postgres exited with status \(process.terminationStatus) on port \(currentPort): \(logTail())")
                }
                let ready = try execute(binaries + "/pg_isready", ["-q", "-h", "127.0.0.1", "-p", String(currentPort), "-U", Self.user,
                                                                    "-d", "postgres", "-t", "2"])
                if ready.status == 0 { return }
                guard Date() < deadline else { throw TestFailure("postgres did not accept connections in 30 s: \(logTail())") }
                usleep(50_000)
            }
        }
    }

    /// Stops the server as `pg_ctl stop -m fast` does (clients disconnected, a checkpoint written)
    /// and waits until the postmaster is gone; nothing when it is not running.
    public func stop() throws {
        try lock.withLock {
            guard let process = postmaster, process.isRunning else {
                postmaster = nil
                return
            }
            let (exe, args) = serverCommand("pg_ctl", ["stop", "-D", dataPath, "-m", "fast", "-w", "-t", "60"])
            let r = try execute(exe, args)
            guard r.status == 0 else { throw TestFailure("pg_ctl stop exited \(r.status): \(r.stdout) \(r.stderr)") }
            try Self.waitUntil(30, "the stopped postmaster to exit") { !process.isRunning }
            postmaster = nil
        }
    }

    /// `stop` then `start`, on the same port and data.
    public func restart() throws {
        try stop()
        try start()
    }

    /// Crashes the server as a power cut or an OOM kill would: SIGKILL to the postmaster (its pid
    /// is the first line of `data/postmaster.pid`) and to every process it started, so no
    /// shutdown checkpoint is written and the next `start` runs crash recovery. Returns once they
    /// are all gone.
    public func kill9() throws {
        try lock.withLock {
            guard let process = postmaster, process.isRunning else { throw TestFailure("kill9: the server is not running") }
            let text = try String(contentsOfFile: dataPath + "/postmaster.pid", encoding: .utf8)
            guard let line = text.split(separator: "\n").first, let pid = pid_t(line.trimmingCharacters(in: .whitespaces)), pid > 0 else {
                throw TestFailure("kill9: no pid in \(dataPath)/postmaster.pid")
            }
            // Stopped, the postmaster can start no child between the listing and the kill.
            kill(pid, SIGSTOP)
            let children = ProcessTable.children(of: pid)
            kill(pid, SIGKILL)
            for child in children { kill(child, SIGKILL) }
            try Self.waitUntil(10, "the killed postmaster and its \(children.count) children to be gone") {
                !process.isRunning && children.allSatisfy { !ProcessTable.isAlive($0) }
            }
            postmaster = nil
        }
    }

    /// Stops the server at once (PostgreSQL's immediate shutdown) and removes its directory.
    /// Called by `deinit` and at exit; the server cannot start again.
    public func shutdown() {
        lock.withLock {
            guard !closed else { return }
            closed = true
            if let process = postmaster {
                Self.stopProcess(process.processIdentifier)
                postmaster = nil
            }
            try? FileManager.default.removeItem(at: directory)
        }
        LiveServers.shared.remove(self)
    }

    /// Removes the directories of servers whose test process has ended (`owner` names a process
    /// that no longer runs), stopping a postmaster still running in one. Each new server calls it;
    /// directories of running test processes are left alone.
    public static func removeStaleDirectories() {
        // Without /proc no owner can be told alive: remove nothing.
        guard ProcessTable.stat(getpid()) != nil else { return }
        let fm = FileManager.default
        let tmp = fm.temporaryDirectory
        guard let names = try? fm.contentsOfDirectory(atPath: tmp.path) else { return }
        for entry in names where entry.hasPrefix("vouch-pg-") {
            let dir = tmp.appendingPathComponent(entry)
            if let owner = try? String(contentsOf: dir.appendingPathComponent("owner"), encoding: .utf8) {
                let fields = owner.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
                guard fields.count == 2, let pid = pid_t(fields[0]), let start = UInt64(fields[1]) else { continue }
                if ProcessTable.isAlive(pid, startTime: start) { continue }
            } else {
                // No owner yet: a server being made now, unless the directory is older than a minute.
                let made = (try? fm.attributesOfItem(atPath: dir.path)[.modificationDate] as? Date) ?? Date()
                if Date().timeIntervalSince(made) < 60 { continue }
            }
            if let text = try? String(contentsOf: dir.appendingPathComponent("data/postmaster.pid"), encoding: .utf8),
               let line = text.split(separator: "\n").first, let pid = pid_t(line.trimmingCharacters(in: .whitespaces)), pid > 0,
               ProcessTable.stat(pid)?.command == "postgres" {
                stopProcess(pid)
            }
            try? fm.removeItem(at: dir)
        }
    }

    // MARK: - Making the cluster

    private var dataPath: String { directory.appendingPathComponent("data").path }

    /// initdb (as the server's account) and the settings every start uses.
    private func prepare() throws {
        let socket = directory.appendingPathComponent("socket")
        try FileManager.default.createDirectory(at: socket, withIntermediateDirectories: false)
        if let account {
            for path in [directory.path, socket.path] {
                try FileManager.default.setAttributes([.ownerAccountID: NSNumber(value: account.uid), .groupOwnerAccountID: NSNumber(value: account.gid)],
                                                      ofItemAtPath: path)
            }
        }
        let (exe, args) = serverCommand("initdb", ["-D", dataPath, "-A", "trust", "-U", Self.user, "-E", "UTF8", "--locale=C", "--no-sync"])
        let r = try execute(exe, args)
        guard r.status == 0 else { throw TestFailure("initdb exited \(r.status): \(r.stdout.suffix(500)) \(r.stderr.suffix(1500))") }
        let settings = """

            # PostgresServer (Tests/VouchTestSupport): the port is given on the command line.
            listen_addresses = '127.0.0.1'
            unix_socket_directories = '\(socket.path)'
            max_connections = 200
            log_min_messages = warning
            logging_collector = off

            """
        let conf = try FileHandle(forWritingTo: URL(fileURLWithPath: dataPath + "/postgresql.conf"))
        defer { try? conf.close() }
        try conf.seekToEnd()
        try conf.write(contentsOf: Data(settings.utf8))
    }

    /// `vouch-pg-XXXXXX` (mode 0700) under the temporary directory, with this process's `owner` file.
    private static func makeDirectory() throws -> URL {
        var template = Array((FileManager.default.temporaryDirectory.path + "/vouch-pg-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!).map { String(cString: $0) } }
        guard let made else { throw TestFailure("mkdtemp under \(FileManager.default.temporaryDirectory.path) failed: errno \(errno)") }
        let dir = URL(fileURLWithPath: made)
        let me = getpid()
        try Data("\(me) \(ProcessTable.stat(me)?.startTime ?? 0)\n".utf8).write(to: dir.appendingPathComponent("owner"))
        return dir
    }

    /// The newest `/usr/lib/postgresql/VERSION/bin` with the server, or `pg_config --bindir`.
    private static func findBinaries() throws -> String {
        let fm = FileManager.default
        let tools = ["initdb", "postgres", "pg_ctl", "pg_isready", "psql"]
        func complete(_ dir: String) -> Bool { tools.allSatisfy { fm.isExecutableFile(atPath: dir + "/" + $0) } }
        let root = "/usr/lib/postgresql"
        let versions = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).compactMap { v -> ([Int], String)? in
            let parts = v.split(separator: ".").map { Int($0) }
            return parts.contains(nil) || parts.isEmpty ? nil : (parts.map { $0! }, v)
        }
        for (_, v) in versions.sorted(by: { $0.0.lexicographicallyPrecedes($1.0) }).reversed() where complete("\(root)/\(v)/bin") {
            return "\(root)/\(v)/bin"
        }
        for pgConfig in ["/usr/bin/pg_config", "/usr/local/bin/pg_config"] where fm.isExecutableFile(atPath: pgConfig) {
            if let r = try? execute(pgConfig, ["--bindir"], in: nil), r.status == 0 {
                let dir = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                if complete(dir) { return dir }
            }
        }
        throw TestFailure("PostgreSQL's server programs (\(tools.joined(separator: ", "))) are in neither \(root)/*/bin nor pg_config --bindir: "
                          + "install Debian's postgresql package (make deps)")
    }

    private static func checkIdentifier(_ name: String) throws {
        let ok = (1...63).contains(name.utf8.count) && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
            && !(name.utf8.first! >= 0x30 && name.utf8.first! <= 0x39)
        guard ok else { throw TestFailure("database name \(name.debugDescription): lower-case letters, digits and _, 63 bytes at most, not starting with a digit") }
    }

    // MARK: - Processes

    /// `tool` from `binaries`, as the server's account when the tests run as root.
    private func serverCommand(_ tool: String, _ args: [String]) -> (String, [String]) {
        guard let account else { return (binaries + "/" + tool, args) }
        return (ServerAccount.setpriv, account.setprivArguments + ["--", binaries + "/" + tool] + args)
    }

    private func execute(_ exe: String, _ args: [String]) throws -> CommandOutput {
        try Self.execute(exe, args, in: directory)
    }

    /// Runs `exe` to completion (stdin empty, `PG*` variables removed so that only the arguments
    /// say where to connect), capturing stdout and stderr apart.
    private static func execute(_ exe: String, _ args: [String], in directory: URL?) throws -> CommandOutput {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = environment
        if let directory { p.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // stderr is read on another thread so that neither pipe can fill while the other is read.
        let errData = Box(Data())
        let done = DispatchSemaphore(value: 0)
        Thread {
            errData.value = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        p.waitUntilExit()
        return CommandOutput(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                             stderr: String(decoding: errData.value, as: UTF8.self))
    }

    private static let environment: [String: String] = {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        env["PGCONNECT_TIMEOUT"] = "10"
        return env
    }()

    private func openLog() throws -> FileHandle {
        let path = directory.appendingPathComponent("server.log").path
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        return handle
    }

    private func logTail() -> String {
        let log = (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
        return String(log.suffix(2000))
    }

    /// SIGQUIT (immediate shutdown: the postmaster stops its children and exits), then SIGKILL if
    /// it has not exited in 10 s. Uses no Foundation process machinery, so it is safe at exit.
    private static func stopProcess(_ pid: pid_t) {
        guard pid > 0, ProcessTable.isAlive(pid) else { return }
        kill(pid, SIGQUIT)
        if (try? waitUntil(10, "postgres to quit", { !ProcessTable.isAlive(pid) })) == nil {
            kill(pid, SIGKILL)
            _ = try? waitUntil(5, "postgres to die", { !ProcessTable.isAlive(pid) })
        }
    }

    private static func waitUntil(_ seconds: TimeInterval, _ what: String, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < deadline else { throw TestFailure("timed out after \(Int(seconds)) s waiting for \(what)") }
            usleep(20_000)
        }
    }
}

private struct CommandOutput {
    let status: Int32
    let stdout: String
    let stderr: String
}

private final class Box<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// The account server commands run as when the tests run as root: initdb and postgres refuse root.
private struct ServerAccount {
    static let setpriv = "/usr/bin/setpriv"
    let uid: uid_t
    let gid: gid_t

    var setprivArguments: [String] { ["--reuid=\(uid)", "--regid=\(gid)", "--init-groups"] }

    /// Debian's `postgres` system user, which the postgresql package creates.
    static func postgres() throws -> ServerAccount {
        guard let pw = getpwnam("postgres") else {
            throw TestFailure("tests run as root, and initdb and postgres refuse root, but there is no postgres user: install Debian's postgresql package (make deps)")
        }
        return ServerAccount(uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid)
    }
}

/// What `/proc` says about processes, for waiting on processes that are not this one's children.
private enum ProcessTable {
    struct Stat {
        let command: String
        let state: Character
        let parent: pid_t
        let startTime: UInt64
    }

    /// `/proc/PID/stat`: the command name, state, parent and start time (fields 2, 3, 4 and 22).
    static func stat(_ pid: pid_t) -> Stat? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        guard rest.count > 19, let state = rest[0].first, let parent = pid_t(rest[1]), let start = UInt64(rest[19]) else { return nil }
        return Stat(command: String(text[text.index(after: open)..<close]), state: state, parent: parent, startTime: start)
    }

    /// Running: present and not a zombie (an exited child nobody has reaped yet), and, given a
    /// start time, the same process rather than a later one with its pid.
    static func isAlive(_ pid: pid_t, startTime: UInt64? = nil) -> Bool {
        guard let s = stat(pid), s.state != "Z", s.state != "X" else { return false }
        return startTime.map { $0 == s.startTime } ?? true
    }

    static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { stat($0)?.parent == parent }
    }
}

/// The thread postmasters are spawned from. Linux sends a child its parent-death signal when the
/// *thread* that started it ends, not the process; a test's thread (a Dispatch or Swift concurrency
/// worker) may end while the server is still wanted, so spawns happen on this one, which never ends.
private final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()
    private let condition = NSCondition()
    private var pending: [@Sendable () -> Void] = []

    private init() {
        let thread = Thread { [self] in serve() }
        thread.name = "PostgresServer spawner"
        thread.start()
    }

    private func serve() {
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            let job = pending.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// `process.run()` on this thread.
    func run(_ process: Process) throws {
        let box = Box(process), failure = Box<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        pending.append {
            do { try box.value.run() } catch { failure.value = error }
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        if let error = failure.value { throw error }
    }
}

/// The servers not yet shut down, so that an `atexit` handler can stop them: `shared` is never
/// deinitialized, and a test process may exit with others open.
private final class LiveServers: @unchecked Sendable {
    static let shared = LiveServers()
    private let lock = NSLock()
    private var servers: [ObjectIdentifier: Weak] = [:]

    private final class Weak {
        weak var server: PostgresServer?
        init(_ server: PostgresServer) { self.server = server }
    }

    private init() {
        atexit { LiveServers.shared.shutdownAll() }
    }

    func add(_ server: PostgresServer) { lock.withLock { servers[ObjectIdentifier(server)] = Weak(server) } }
    func remove(_ server: PostgresServer) { lock.withLock { _ = servers.removeValue(forKey: ObjectIdentifier(server)) } }

    private func shutdownAll() {
        let open = lock.withLock { servers.values.compactMap(\.server) }
        for server in open { server.shutdown() }
    }
}
