import Foundation
import XCTest
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel

/// Hints (`POST /v1/hosts/{id}/hint`) in the scheduler, on the manual clock: a hint makes a pull
/// host's round due now, hints are coalesced and hinted rounds are a second apart, a hint during a
/// round is followed by another round, and push hosts are refused.
final class DriftHintTests: XCTestCase {
    let h1 = String(repeating: "1", count: 32), p1 = String(repeating: "2", count: 32)

    /// A broker with an hour's interval and `h1` trusted after its first round.
    func trustedBroker() throws -> Broker {
        let b = try Broker(policy: Broker.policy(interval: 3600))
        try b.addHost(h1)
        b.source.script(b.url(h1), .quote)
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: Reattestor.firstPullDelay)[h1], .verdict(trusted: true))
        return b
    }

    func testHintOfADriftedHostPullsAtOnceAndRevokes() throws {
        let b = try trustedBroker()
        try b.addCertificate(host: h1, serial: "0a0b")
        b.source.script(b.url(h1), .drifted)
        XCTAssertEqual(try b.reattestor.hint(hostID: h1, now: b.clock.now()), .scheduled(b.clock.now()))
        XCTAssertEqual(b.advance(by: 0)[h1], .verdict(trusted: false), "the hinted round runs at the next tick, not an interval later")
        XCTAssertEqual(try b.state(h1), .untrusted)
        XCTAssertNotNil(try b.store.certificate(serial: "0a0b")?.revokedAt)
    }

    func testHintOfAHostThatDidNotDriftIsATrustedRoundAndRevokesNothing() throws {
        let b = try trustedBroker()
        try b.addCertificate(host: h1, serial: "0a0c")
        b.source.script(b.url(h1), .quote)
        _ = try b.reattestor.hint(hostID: h1, now: b.clock.now())
        XCTAssertEqual(b.advance(by: 0)[h1], .verdict(trusted: true))
        XCTAssertEqual(try b.state(h1), .trusted)
        XCTAssertNil(try b.store.certificate(serial: "0a0c")?.revokedAt)
    }

    func testHintsBeyondTheRateAreCoalescedIntoOneRoundASecond() throws {
        let b = try trustedBroker()
        b.source.script(b.url(h1), .quote, .quote, .quote)
        let t0 = b.clock.now()
        XCTAssertEqual(try b.reattestor.hint(hostID: h1, now: t0), .scheduled(t0))
        XCTAssertEqual(try b.reattestor.hint(hostID: h1, now: t0), .coalesced(t0))
        XCTAssertEqual(b.advance(by: 0).count, 1)
        // Within the second after that round began: one more round, at the end of the second.
        for _ in 0..<5 { _ = try b.reattestor.hint(hostID: h1, now: b.clock.now()) }
        XCTAssertEqual(try b.reattestor.hint(hostID: h1, now: b.clock.now()), .coalesced(t0.addingTimeInterval(Reattestor.hintGap)))
        XCTAssertTrue(b.advance(by: 0.5).isEmpty, "no second round inside the gap")
        XCTAssertEqual(b.advance(by: 0.5).count, 1, "the coalesced hints make one round")
        XCTAssertTrue(b.advance(by: 5).isEmpty, "and no more")
        XCTAssertEqual(try b.store.attestations(HistoryQuery(hostID: h1, kind: .reattestation)).count, 3)
    }

    func testHintDuringARoundIsFollowedByAnotherRound() throws {
        let b = try trustedBroker()
        b.source.script(b.url(h1), .quote, .drifted)
        b.clock.advance(by: 3600)
        let rounds = b.reattestor.tick(now: b.clock.now())
        XCTAssertEqual(rounds.map(\.hostID), [h1])
        // The round is in flight (its quote may predate the change) when the hint comes.
        XCTAssertEqual(try b.reattestor.hint(hostID: h1, now: b.clock.now()), .scheduled(b.clock.now()))
        XCTAssertEqual(b.reattestor.run(rounds[0]), .verdict(trusted: true))
        XCTAssertEqual(b.advance(by: 0)[h1], .verdict(trusted: false))
    }

    func testPushHostsAndUnknownHostsAreNotPulledOnAHint() throws {
        let b = try trustedBroker()
        try b.addHost(p1, mode: .push)
        b.advance(by: Reattestor.refreshInterval)
        for id in [p1, String(repeating: "3", count: 32)] {
            XCTAssertThrowsError(try b.reattestor.hint(hostID: id, now: b.clock.now())) { XCTAssertEqual(($0 as? VouchError)?.code, .hostNotPulled) }
        }
    }
}

/// `POST /v1/hosts/{id}/hint` through `BrokerAPI`: authenticated exactly as push reports are (this
/// host's current host certificate), answered 202, refused with each code in its order.
final class DriftHintAPITests: XCTestCase {
    let h1 = String(repeating: "1", count: 32), h2 = String(repeating: "2", count: 32)

    func hint(_ api: BrokerAPI, _ host: String, presenting certificate: [UInt8]?, body: [UInt8] = []) -> HTTPResponse {
        api.handle(HTTPRequest(method: "POST", path: "/v1/hosts/\(host)/hint", headers: body.isEmpty ? [:] : ["content-type": "application/json"],
                               body: body, peer: "10.0.0.1", clientCertificate: certificate))
    }

    func code(_ r: HTTPResponse) -> String? { (try? JSONCodec.decode(APIError.self, from: r.body))?.code }

    func testHintNeedsThisHostsCertificateAndSchedulesOneRoundASecond() throws {
        let b = try Broker(policy: Broker.policy(interval: 3600))
        let api = BrokerAPI(service: b.service, adminTokenDigests: [], reattestor: b.reattestor)
        var certificates: [String: [UInt8]] = [:]
        for h in [h1, h2] {
            try b.addHost(h)
            b.source.script(b.url(h), .quote)
            let now = b.clock.now()
            certificates[h] = try b.service.authorities.current.signer.issue(publicKey: try PrivateKey.generate().publicKey, profile: LeafProfile(
                uriSANs: [b.service.config.hostSpiffeID(h)], notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86400),
                usage: .host), serial: [0x01]).der
        }
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: Reattestor.firstPullDelay).count, 2)

        let none = hint(api, h1, presenting: nil)
        XCTAssertEqual(code(none), ErrorCode.clientCertificateRequired.rawValue)
        XCTAssertEqual(none.status, 401)
        let other = hint(api, h1, presenting: certificates[h2])
        XCTAssertEqual(code(other), ErrorCode.clientCertificateMismatch.rawValue)
        XCTAssertEqual(other.status, 403)
        XCTAssertFalse(none.keepsConnection || other.keepsConnection, "a refused request's connection keeps the short limits")
        XCTAssertTrue(b.advance(by: 0).isEmpty, "refused hints schedule nothing")

        let first = hint(api, h1, presenting: certificates[h1])
        XCTAssertEqual(first.status, 202, String(decoding: first.body, as: UTF8.self))
        XCTAssertTrue(first.keepsConnection, "the host's authenticated connection may stay open until its next report")
        XCTAssertEqual(try JSONCodec.decode(HintResponse.self, from: first.body).round, "scheduled")
        let again = hint(api, h1, presenting: certificates[h1], body: JSONCodec.encode(HintRequest(reason: "pcr_changed")))
        XCTAssertEqual(try JSONCodec.decode(HintResponse.self, from: again.body).round, "coalesced")
        XCTAssertEqual(Array(b.advance(by: 0).keys), [h1], "one round for both hints, none for the other host")

        let long = hint(api, h1, presenting: certificates[h1], body: JSONCodec.encode(HintRequest(reason: String(repeating: "x", count: 129))))
        XCTAssertEqual(code(long), ErrorCode.badRequest.rawValue)
        let unscheduled = BrokerAPI(service: b.service, adminTokenDigests: [])
        XCTAssertEqual(code(hint(unscheduled, h1, presenting: certificates[h1])), ErrorCode.hostNotPulled.rawValue)
    }
}
