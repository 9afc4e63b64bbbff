import XCTest
import VouchCore
@testable import VouchTPM

/// `TPMDevice.readNV`'s loop over a TPM's answers (no TPM needed): an answer of no bytes, or of
/// more than were asked for, is refused rather than spun on or overrun.
final class TPMNVChunkTests: XCTestCase {
    func testChunksAreReadInOrderAndABadAnswerIsRefused() throws {
        let index = (0..<1100).map { UInt8(truncatingIfNeeded: $0) }
        var asked: [[Int]] = []
        let whole = try TPMDevice.readInChunks(size: index.count, chunk: 512) { offset, count in
            asked.append([offset, count])
            return Array(index[offset..<offset + count])
        }
        XCTAssertEqual(whole, index)
        XCTAssertEqual(asked, [[0, 512], [512, 512], [1024, 76]])
        // A short answer is read on from where it stopped.
        XCTAssertEqual(try TPMDevice.readInChunks(size: 10, chunk: 512) { offset, _ in Array(index[offset..<offset + 1]) }, Array(index.prefix(10)))

        var calls = 0
        XCTAssertThrowsError(try TPMDevice.readInChunks(size: 100, chunk: 512) { _, _ in
            calls += 1
            guard calls < 1000 else { throw VouchError(.internalError, "the loop did not stop") }
            return []
        }) { XCTAssertEqual(($0 as? VouchError)?.code, .tpm) }
        XCTAssertEqual(calls, 1)
        XCTAssertThrowsError(try TPMDevice.readInChunks(size: 4, chunk: 512) { _, count in [UInt8](repeating: 0, count: count + 1) }) {
            XCTAssertEqual(($0 as? VouchError)?.code, .tpm)
        }
    }
}
