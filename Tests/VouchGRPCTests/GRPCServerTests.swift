import Foundation
import XCTest
import VouchGRPC
import VouchTestSupport

/// The gRPC server driven by an unmodified gRPC client (grpcio), calls of each kind.
final class GRPCServerTests: GRPCTestCase {
    func testUnaryCallEchoesTheMessageAndReadsMetadata() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("echo")
        XCTAssertEqual(out["reply"] as? String, "hello|abc,def|application/grpc")
        XCTAssertTrue(eventually(within: 60) { server.activeStreams == 0 })
    }

    func testServerStreamingSendsEveryMessageInOrder() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("stream", ["5"])
        XCTAssertEqual(out["messages"] as? [String], ["message 0", "message 1", "message 2", "message 3", "message 4"])
    }

    func testLargeMessagesFlowThroughFlowControl() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("big")
        XCTAssertEqual(out["sizes"] as? [Int], [1 << 20, 1 << 20, 1 << 20, 1 << 20])
        XCTAssertEqual(out["ok"] as? Bool, true)
    }

    func testAThrownStatusReachesTheClientWithItsCodeAndMessage() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("fail")
        XCTAssertEqual(out["code"] as? String, "PERMISSION_DENIED")
        XCTAssertEqual(out["details"] as? String, TestService.failMessage)
        let other = try client("call", ["/test.Echo/Throws"])
        XCTAssertEqual(other["code"] as? String, "INTERNAL")
        let unknown = try client("call", ["/test.Nothing/Here"])
        XCTAssertEqual(unknown["code"] as? String, "UNIMPLEMENTED")
    }

    func testAClientCancellingAStreamCancelsTheHandler() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("cancel")
        XCTAssertEqual(out["first"] as? String, "holding")
        XCTAssertEqual(out["code"] as? String, "CANCELLED")
        XCTAssertEqual(events.wait(for: "hold ended"), "cancelled")
        XCTAssertTrue(eventually(within: 60) { server.activeStreams == 0 })
    }

    func testAHandlerBlockedOnAClientThatStoppedReadingWakesWhenItCancels() throws {
        let server = try startServer()
        defer { server.stop() }
        XCTAssertEqual(try client("flood")["first"] as? Int, 1 << 20)
        XCTAssertEqual(events.wait(for: "flood ended"), "cancelled")
        XCTAssertTrue(eventually(within: 60) { server.activeStreams == 0 })
    }

    func testAUnaryCallRunsWhileAStreamIsOpenOnTheSameChannel() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("concurrent")
        XCTAssertEqual(out["first"] as? String, "holding")
        XCTAssertEqual(out["reply"] as? String, "again||application/grpc")
        XCTAssertEqual(out["streams_while_open"] as? Int, 2)
        XCTAssertEqual(events.wait(for: "hold ended"), "cancelled")
    }

    func testAnOversizeRequestIsResourceExhausted() throws {
        var limits = GRPCServer.Limits()
        limits.maxRequestMessageBytes = 1000
        let server = try startServer(limits)
        defer { server.stop() }
        XCTAssertEqual(try client("size", ["1000"])["code"] as? String, "OK")
        XCTAssertEqual(try client("size", ["1001"])["code"] as? String, "RESOURCE_EXHAUSTED")
        XCTAssertEqual(try client("size", ["200000"])["code"] as? String, "RESOURCE_EXHAUSTED")
        XCTAssertEqual(try client("size", ["10"])["code"] as? String, "OK")
    }

    func testACompressedRequestIsUnimplemented() throws {
        let server = try startServer()
        defer { server.stop() }
        XCTAssertEqual(try client("gzip")["code"] as? String, "UNIMPLEMENTED")
    }

    func testPeerCredentialsAreTheClientProcesss() throws {
        let server = try startServer()
        defer { server.stop() }
        let out = try client("peer")
        XCTAssertEqual(out["server"] as? [Int], out["client"] as? [Int])
        XCTAssertEqual((out["client"] as? [Int])?.count, 3)
    }

    func testStopCancelsOpenStreamsAndRemovesTheSocket() throws {
        let server = try startServer()
        let python = try PythonVenv.python("vouch-grpcio-venv", packages: Self.packages, probe: "import grpc")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [dir.appendingPathComponent("client.py").path, socketPath, "hold"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
        XCTAssertEqual(events.wait(for: "hold started"), "started")
        server.stop()
        XCTAssertEqual(events.wait(for: "hold ended"), "cancelled")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socketPath))
        XCTAssertEqual(server.activeStreams, 0)
    }
}
