import XCTest
import VouchCore

/// The retry schedule the re-attestation scheduler (faulted pulls) and the push loop (failed
/// reports) use, checked as values instead of by timing a real daemon.
final class CoreBackoffTests: XCTestCase {
    func testRetriesBackOffFromOneSecondCappedAtTheInterval() {
        let interval: TimeInterval = 10
        XCTAssertEqual((1...6).map { backoffDelay(failures: $0, cap: interval) }, [1, 2, 4, 8, 10, 10])
        XCTAssertEqual(backoffDelay(failures: 0, cap: interval), 1, "a first retry never waits less than 1 s")
        XCTAssertEqual(backoffDelay(failures: 1_000, cap: 3_600), 512, "doubling stops at 512 s")
        // A host that faults a few times is retried well before its next scheduled round.
        XCTAssertLessThan((1...3).map { backoffDelay(failures: $0, cap: interval) }.reduce(0, +), interval)
    }
}
