import Foundation
import XCTest
import VouchGRPC
import VouchTestSupport

/// The server against clients that are not gRPC: raw bytes on the socket, and curl speaking
/// HTTP/2 with prior knowledge.
final class GRPCConnectionTests: GRPCTestCase {
    func testGarbageClosesThatConnectionAndOthersAreStillServed() throws {
        let server = try startServer()
        defer { server.stop() }
        let http1 = try RawSocket(unixPath: socketPath)
        http1.send(bytes: Array("GET / HTTP/1.1\r\nHost: vouch\r\n\r\n".utf8) + (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        XCTAssertTrue(http1.closedByServer(within: 60))
        let garbageAfterPreface = try RawSocket(unixPath: socketPath)
        garbageAfterPreface.send(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [UInt8](repeating: 0xFF, count: 10))
        XCTAssertTrue(garbageAfterPreface.closedByServer(within: 60))
        XCTAssertEqual(try client("echo")["reply"] as? String, "hello|abc,def|application/grpc")
    }

    func testConnectionsBeyondTheLimitAreClosedAtAccept() throws {
        var limits = GRPCServer.Limits()
        limits.maxConnections = 1
        let server = try startServer(limits)
        defer { server.stop() }
        let first = try RawSocket(unixPath: socketPath)
        XCTAssertFalse(first.receive(timeout: 60).isEmpty)   // the server's SETTINGS: it was accepted
        let second = try RawSocket(unixPath: socketPath)
        XCTAssertTrue(second.closedByServer(within: 60))
    }

    func testRequestsThatAreNotGRPCGetHTTPStatuses() throws {
        let server = try startServer()
        defer { server.stop() }
        XCTAssertEqual(try curl(["-X", "GET"]), "405")
        XCTAssertEqual(try curl(["-H", "content-type: application/json", "--data-binary", "{}"]), "415")
        XCTAssertEqual(try curl(["-H", "content-type: application/grpc+proto", "--data-binary", "@" + message(Array("hi".utf8)).path]), "200")
    }

    /// curl's HTTP status for a request to the unary echo method.
    func curl(_ args: [String]) throws -> String {
        let r = try PythonVenv.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge", "--max-time", "60",
                                                     "--unix-socket", socketPath] + args + ["http://localhost/test.Echo/Unary"])
        guard r.status == 0 else { throw TestFailure("curl exited \(r.status): \(r.stderr)") }
        return r.stdout
    }

    /// A file holding one length-prefixed gRPC message.
    func message(_ body: [UInt8]) throws -> URL {
        let url = dir.appendingPathComponent("message.bin")
        let n = UInt32(body.count)
        try Data([0, UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body).write(to: url)
        return url
    }
}

