import Foundation
import Synchronization
import VouchAPI
import VouchBroker
import VouchCore
import VouchModel
import XCTest

/// Holds every pull until `release`, counting how many are held at once: what shows whether
/// `concurrency` rounds really run together.
final class HoldingSource: EvidenceSource {
    private let state = Mutex<(inside: Int, peak: Int, calls: Int, released: Bool)>((0, 0, 0, false))
    private let entered = DispatchSemaphore(value: 0)

    var peak: Int { state.withLock { $0.peak } }
    var calls: Int { state.withLock { $0.calls } }

    /// Waits until `count` pulls have entered (in all), at most 10 s; false on timeout.
    func waitForCalls(_ count: Int) -> Bool {
        for _ in 0..<count where entered.wait(timeout: .now() + 10) == .timedOut { return false }
        return true
    }

    func release() { state.withLock { $0.released = true } }

    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        state.withLock { s in
            s.inside += 1
            s.calls += 1
            s.peak = max(s.peak, s.inside)
        }
        entered.signal()
        let deadline = Date().addingTimeInterval(10)
        while !state.withLock({ $0.released }) && Date() < deadline { usleep(2_000) }
        state.withLock { $0.inside -= 1 }
        throw VouchError(.attesterUnreachable, "held, then let go")
    }

    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        throw VouchError(.attesterUnreachable, "no TEE attesters here")
    }
}

/// `Reattestor.start`'s threads: pull rounds run on `concurrency` worker threads, all of them at
/// once when that many rounds are due (libdispatch ran about 12 of 32), and `stop` drops the rounds
/// no worker started.
final class ReattestorWorkerTests: XCTestCase {
    /// `count` pull hosts and a reattestor over `source` for which they are all due now: first
    /// seen by a tick, then the clock moved past the first pull's delay.
    func dueHosts(_ count: Int, source: EvidenceSource, concurrency: Int) throws -> (Broker, Reattestor, [String]) {
        let b = try Broker()
        let ids = try (0..<count).map { i in try b.addHost(String(format: "%032x", i + 1)) }
        let reattestor = Reattestor(service: b.service, source: source, concurrency: concurrency, spread: { 0.5 })
        XCTAssertTrue(reattestor.tick(now: b.clock.now()).isEmpty)
        b.clock.advance(by: Reattestor.firstPullDelay)
        return (b, reattestor, ids)
    }

    func testAsManyRoundsRunAtOnceAsTheConcurrencyAllows() throws {
        let source = HoldingSource()
        let (_, reattestor, _) = try dueHosts(24, source: source, concurrency: 24)
        reattestor.start()
        XCTAssertTrue(source.waitForCalls(24), "every due round started while the others were still running")
        XCTAssertEqual(source.peak, 24)
        source.release()
        reattestor.stop()
        XCTAssertEqual(source.calls, 24, "each due host pulled once")
    }

    func testStopDropsRoundsNoWorkerStartedAndReleasesTheirHosts() throws {
        let source = HoldingSource()
        let (b, reattestor, ids) = try dueHosts(6, source: source, concurrency: 2)
        reattestor.start()
        XCTAssertTrue(source.waitForCalls(2))
        let stopped = DispatchSemaphore(value: 0)
        Thread { reattestor.stop(timeout: 10); stopped.signal() }.start()
        // Until stop has closed the queue (the two held rounds are still running meanwhile).
        let deadline = Date().addingTimeInterval(30)
        while !reattestor.isStopping && Date() < deadline { usleep(1_000) }
        XCTAssertTrue(reattestor.isStopping)
        source.release()
        XCTAssertEqual(stopped.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(source.calls, 2, "the four queued rounds never ran")
        XCTAssertEqual(source.peak, 2)
        // The dropped hosts are not left in flight: a scheduling pass finds them due again (the two
        // that ran faulted and back off 1 s).
        let again = Set(reattestor.tick(now: b.clock.now().addingTimeInterval(0.5)).map(\.hostID))
        XCTAssertEqual(again.count, 4)
        XCTAssertTrue(again.isSubset(of: Set(ids)))
    }

    /// The timetable on a fleet: 300 hosts, every fault backing off 1, 2, 4 s, scheduling passes
    /// every 62.5 ms for 10 s of clock. Each host is pulled exactly at its due times (2, 3, 5 and 9 s
    /// after first sight), never twice in one pass, and none is lost along the way.
    func testEveryHostIsPulledAtEachDueTimeOnceOnAFleet() throws {
        let source = FaultingSource()
        let (b, reattestor, ids) = try dueHosts(300, source: source, concurrency: 1)
        var pulls: [String: [Double]] = [:]
        let start = b.clock.now().addingTimeInterval(-Reattestor.firstPullDelay)
        for step in 0...160 {
            if step > 0 { b.clock.advance(by: 0.0625) }   // exact in binary: due times land on a pass
            let due = reattestor.tick(now: b.clock.now())
            XCTAssertEqual(Set(due.map(\.hostID)).count, due.count, "a host is due once per pass")
            for round in due {
                pulls[round.hostID, default: []].append((b.clock.now().timeIntervalSince(start) * 100).rounded() / 100)
                reattestor.run(round)
            }
        }
        XCTAssertEqual(Set(pulls.keys), Set(ids))
        for id in ids { XCTAssertEqual(pulls[id], [2, 3, 5, 9], id) }
    }
}

/// Every pull fails at once (the attester is unreachable): the scheduler backs off.
final class FaultingSource: EvidenceSource {
    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        throw VouchError(.attesterUnreachable, "unreachable")
    }
    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        throw VouchError(.attesterUnreachable, "unreachable")
    }
}
