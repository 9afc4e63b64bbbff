import Foundation
import XCTest
import VouchCore
import VouchTLog

/// VouchTLog against Go's golang.org/x/mod/sumdb/tlog (Debian's golang-golang-x-mod-dev, built
/// offline from /usr/share/gocode): the same log, the same facts, compared line by line. A
/// missing Go toolchain or library fails the test; it never skips.
final class InteropTests: XCTestCase {
    static let size = 70000

    func testTreeHashesProofsAndTilesMatchGoSumdbTlog() throws {
        let goLines = try runGoProgram().split(separator: "\n").map(String.init)
        var tree = MemoryMerkleTree(hasher: sha256Hasher)
        for i in 0..<Self.size { tree.append(entry: Array("entry \(i)".utf8)) }
        let ours = try facts(tree)
        XCTAssertEqual(goLines.count, ours.count)
        XCTAssertGreaterThan(ours.count, 5000)
        for (i, (go, swift)) in zip(goLines, ours).enumerated() where go != swift {
            XCTFail("line \(i + 1) differs:\n go:    \(go.prefix(300))\n swift: \(swift.prefix(300))")
            return
        }
    }

    /// The same lines Tests/Interop/tlog/main.go prints, from VouchTLog.
    func facts(_ tree: MemoryMerkleTree) throws -> [String] {
        let prover = tree.prover
        func hexes(_ hs: [[UInt8]]) -> String { hs.isEmpty ? "-" : hs.map { Hex.encode($0) }.joined(separator: ",") }
        var out: [String] = []
        for n in UInt64(1)...70 {
            out.append("root \(n) \(Hex.encode(try prover.root(size: n)))")
            for i in 0..<n { out.append("inclusion \(i) \(n) \(hexes(try prover.inclusionProof(index: i, size: n)))") }
            for m in 1...n { out.append("consistency \(m) \(n) \(hexes(try prover.consistencyProof(old: m, new: n)))") }
        }
        let sizes: [UInt64] = [255, 256, 257, 511, 512, 4097, 65535, 65536, 65537, 69999, 70000]
        for n in sizes {
            out.append("root \(n) \(Hex.encode(try prover.root(size: n)))")
            for i in [0, 1, n / 3, n / 2, n - 2, n - 1] {
                out.append("inclusion \(i) \(n) \(hexes(try prover.inclusionProof(index: i, size: n)))")
            }
            for m in sizes where m <= n {
                out.append("consistency \(m) \(n) \(hexes(try prover.consistencyProof(old: m, new: n)))")
            }
        }
        let steps: [UInt64] = [0, 1, 2, 255, 256, 257, 300, 65535, 65536, 65537, 69999, 70000]
        for (a, old) in steps.enumerated() {
            for n in steps[a...] {
                out.append("tiles \(old) \(n) " + (try Tile.newTiles(oldSize: old, newSize: n)).map(\.path).joined(separator: " "))
            }
        }
        for tile in try Tile.newTiles(oldSize: 65000, newSize: 70000) {
            out.append("tile \(tile.path) \(Hex.encode(try TileContent.bytes(of: tile, from: tree)))")
        }
        let body = try CheckpointBody(origin: "go.sum database tree", size: UInt64(Self.size),
                                      rootHash: prover.root(size: UInt64(Self.size)))
        out.append("note " + body.text.replacingOccurrences(of: "\n", with: "|"))
        return out
    }

    /// Builds Tests/Interop/tlog/main.go in a temporary directory, with no network (GOPROXY=off,
    /// GOPATH mode over Debian's Go library path), and returns what it prints.
    func runGoProgram() throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Interop/tlog/main.go")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-tlog-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let binary = dir.appendingPathComponent("tlog-interop").path
        let env = ["PATH": "/usr/bin:/bin", "HOME": dir.path, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
                   "GOCACHE": dir.appendingPathComponent("cache").path, "GOFLAGS": "", "GOPROXY": "off", "CGO_ENABLED": "0"]
        _ = try run("/usr/bin/go", ["build", "-o", binary, source.path], env: env, in: dir)
        return try run(binary, [], env: env, in: dir)
    }

    func run(_ tool: String, _ args: [String], env: [String: String], in dir: URL) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.environment = env
        p.currentDirectoryURL = dir
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw VouchError(.internalError, "\(tool) \(args.joined(separator: " ")) failed: \(String(decoding: errData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
