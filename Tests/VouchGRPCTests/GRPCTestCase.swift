import Foundation
import XCTest
import VouchCore
import VouchGRPC
import VouchTestSupport

/// A test server on a temporary socket, with the services below, and the clients that call it:
/// Python grpcio (PyPI, pinned, in a throwaway venv) with generic stubs (bytes in, bytes out, no
/// protobuf) on a `unix:` target. Subclasses hold the tests.
class GRPCTestCase: XCTestCase {
    static let packages = ["grpcio==1.85.3"]

    var dir: URL!
    var socketPath: String { dir.appendingPathComponent("grpc.sock").path }
    let events = Events()

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-grpc-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(Self.client.utf8).write(to: dir.appendingPathComponent("client.py"))
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func startServer(_ limits: GRPCServer.Limits = .init()) throws -> GRPCServer {
        try GRPCServer(unixSocket: socketPath, limits: limits, handler: TestService(events: events).handle)
    }

    /// Runs client.py's `command` against the server; its one JSON line.
    func client(_ command: String, _ args: [String] = []) throws -> [String: Any] {
        let python = try PythonVenv.python("vouch-grpcio-venv", packages: Self.packages, probe: "import grpc")
        let r = try PythonVenv.run(python, [dir.appendingPathComponent("client.py").path, socketPath, command] + args)
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw TestFailure("client.py \(command) exited \(r.status): \(r.stdout) \(r.stderr.suffix(2000))")
        }
        return json
    }

    static let client = #"""
    import json, os, sys, grpc
    path, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    ch = grpc.insecure_channel("unix:" + path)
    unary = lambda m: ch.unary_unary(m, request_serializer=None, response_deserializer=None)
    stream = lambda m: ch.unary_stream(m, request_serializer=None, response_deserializer=None)
    def status(e):
        return {"code": e.code().name, "details": e.details()}
    out = {}
    if cmd == "echo":
        out["reply"] = unary("/test.Echo/Unary")(b"hello", metadata=[("x-vouch-test", "abc"), ("x-vouch-test", "def")], timeout=60).decode()
    elif cmd == "stream":
        out["messages"] = [m.decode() for m in stream("/test.Echo/Count")(args[0].encode(), timeout=60)]
    elif cmd == "big":
        call = stream("/test.Echo/Big")(b"", timeout=120)
        out["sizes"] = [len(m) for m in call]
        out["ok"] = call.code() == grpc.StatusCode.OK
    elif cmd == "fail":
        try:
            unary("/test.Echo/Fail")(b"", timeout=60)
            out["code"] = "OK"
        except grpc.RpcError as e:
            out = status(e)
    elif cmd == "call":
        try:
            unary(args[0])(b"", timeout=60)
            out["code"] = "OK"
        except grpc.RpcError as e:
            out = status(e)
    elif cmd == "cancel":
        it = stream("/test.Echo/Hold")(b"", timeout=120)
        out["first"] = next(it).decode()
        it.cancel()
        try:
            next(it)
        except grpc.RpcError as e:
            out.update(status(e))
    elif cmd == "concurrent":
        it = stream("/test.Echo/Hold")(b"", timeout=120)
        out["first"] = next(it).decode()
        out["reply"] = unary("/test.Echo/Unary")(b"again", timeout=60).decode()
        out["streams_while_open"] = int(unary("/test.Echo/Active")(b"", timeout=60).decode())
        it.cancel()
    elif cmd == "size":
        try:
            unary("/test.Echo/Unary")(b"x" * int(args[0]), timeout=60)
            out["code"] = "OK"
        except grpc.RpcError as e:
            out = status(e)
    elif cmd == "flood":
        it = stream("/test.Echo/Flood")(b"", timeout=120)
        out["first"] = len(next(it))
        it.cancel()
    elif cmd == "gzip":
        try:
            unary("/test.Echo/Unary")(b"x" * 100, compression=grpc.Compression.Gzip, timeout=60)
            out["code"] = "OK"
        except grpc.RpcError as e:
            out = status(e)
    elif cmd == "peer":
        out["server"] = [int(x) for x in unary("/test.Echo/Peer")(b"", timeout=60).decode().split()]
        out["client"] = [os.getpid(), os.getuid(), os.getgid()]
    elif cmd == "hold":
        it = stream("/test.Echo/Hold")(b"", timeout=120)
        try:
            for m in it:
                pass
        except grpc.RpcError as e:
            out = status(e)
    print(json.dumps(out))
    """#
}

/// The handlers the tests call, by method.
struct TestService: Sendable {
    static let failMessage = "no entry for ü (100% sure)\nsecond line"
    let events: Events
    let active = ActiveCount()

    func handle(_ request: GRPCRequest, _ stream: GRPCResponseStream) throws {
        active.change(1)
        defer { active.change(-1) }
        switch request.method {
        case "/test.Echo/Unary":
            let tags = request.metadata["x-vouch-test"]?.joined(separator: ",") ?? ""
            try stream.send(request.message + Array("|\(tags)|\(request.header("Content-Type") ?? "")".utf8))
        case "/test.Echo/Count":
            for i in 0..<(Int(String(decoding: request.message, as: UTF8.self)) ?? 0) { try stream.send(Array("message \(i)".utf8)) }
        case "/test.Echo/Big":
            for i in 0..<4 { try stream.send([UInt8](repeating: UInt8(i), count: 1 << 20)) }
        case "/test.Echo/Fail":
            throw GRPCStatus(.permissionDenied, Self.failMessage)
        case "/test.Echo/Throws":
            throw VouchError(.internalError, "a detail the client must not see")
        case "/test.Echo/Hold":
            try stream.send(Array("holding".utf8))
            events.post("hold started", "started")
            let cancelled = stream.waitForCancellation(timeout: 300)
            let sendRefused = (try? stream.send([1])) == nil
            events.post("hold ended", cancelled && stream.isCancelled && sendRefused ? "cancelled" : "not cancelled")
        case "/test.Echo/Flood":
            // Sends until the client goes: once it stops reading, send blocks on the full queue.
            var sent = 0
            do {
                while true {
                    try stream.send([UInt8](repeating: 7, count: 1 << 20))
                    sent += 1
                }
            } catch let status as GRPCStatus {
                events.post("flood ended", status.code == .cancelled && sent < 1000 ? "cancelled" : "\(status)")
                throw status
            }
        case "/test.Echo/Active":
            try stream.send(Array("\(active.value)".utf8))
        case "/test.Echo/Peer":
            try stream.send(Array("\(request.peer.pid) \(request.peer.uid) \(request.peer.gid)".utf8))
        default:
            throw GRPCStatus(.unimplemented, "unknown method \(request.method)")
        }
    }
}

/// Handlers running now (in this test's server).
final class ActiveCount: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func change(_ d: Int) { lock.withLock { n += d } }
    var value: Int { lock.withLock { n } }
}

/// What handlers report to the test thread, by name; `wait` blocks (up to a generous bound, so a
/// broken server fails the test rather than hanging it) until the name was posted.
final class Events: @unchecked Sendable {
    private let condition = NSCondition()
    private var posted: [String: String] = [:]

    func post(_ name: String, _ value: String) {
        condition.lock()
        posted[name] = value
        condition.broadcast()
        condition.unlock()
    }

    func wait(for name: String) -> String? {
        let deadline = Date().addingTimeInterval(120)
        condition.lock()
        defer { condition.unlock() }
        while posted[name] == nil && condition.wait(until: deadline) {}
        return posted[name]
    }
}
