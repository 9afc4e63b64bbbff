import Foundation
import XCTest
import VouchRuntime

/// `Files.setSocketMode`: the mode goes to the socket this process bound, never through a link
/// swapped in at its path (which a chmod(path) would follow to another file).
final class SocketModeTests: XCTestCase {
    func testTheModeIsSetOnTheSocketAndNeverThroughALink() throws {
        let dir = try TestEnv.tempDir("vouch-socket-mode")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socketPath = dir.appendingPathComponent("s.sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in socketPath.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        XCTAssertEqual(bound, 0)
        XCTAssertTrue(Files.setSocketMode(socketPath, 0o640))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: socketPath)[.posixPermissions] as? Int, 0o640)

        // A link at the path, to a file someone wants opened up: refused, the file untouched.
        let secret = dir.appendingPathComponent("secret").path
        FileManager.default.createFile(atPath: secret, contents: Data("x".utf8), attributes: [.posixPermissions: 0o600])
        let link = dir.appendingPathComponent("link.sock").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: secret)
        XCTAssertFalse(Files.setSocketMode(link, 0o666))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: secret)[.posixPermissions] as? Int, 0o600)
        // A regular file at the path is not a socket either.
        XCTAssertFalse(Files.setSocketMode(secret, 0o666))
    }
}
