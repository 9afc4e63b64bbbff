import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTPM
import VouchTPMWire

/// Every refusal the broker makes, through the real daemon and a real swtpm. Each must answer a
/// 4xx JSON `{code, message}`, issue nothing, and leave an audit record where a host is known.
final class RejectionTests: XCTestCase {
    var tpm: SwTPM!
    var broker: BrokerHarness!
    var attester: Attester!
    var hostID: String!

    override func setUpWithError() throws {
        tpm = try SwTPM()
        broker = try BrokerHarness(trusting: tpm)
        attester = broker.attester(for: tpm)
        hostID = try attester.register()
    }

    override func tearDown() {
        attester = nil
        broker = nil
        tpm = nil
    }

    /// A genuine enrollment request from this host, with hooks to forge one part of it.
    func request(name: String = "agent", bindKey: PrivateKey? = nil, using quoter: Attester? = nil,
                 host: String? = nil) throws -> (EnrollRequest, PrivateKey) {
        let ch = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID), as: ChallengeResponse.self)
        let key = try PrivateKey.generate()
        let csr = try CSR.create(key: key, commonName: name)
        let qd = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(ch.nonce), agentSPKI: try (bindKey ?? key).publicKey.spkiDER)
        let selection = PCRSelection(banks: ch.pcrSelection.map { PCRBankSelection(hash: HashAlg(rawValue: $0.bank)!, pcrs: $0.pcrs) })
        let q = try (quoter ?? attester).quote(qualifyingData: qd, selection: selection)
        return (EnrollRequest(hostId: host ?? hostID, nonce: ch.nonce, agentName: name, csr: try csr.pem,
                              quote: try Attester.quoteBody(q, eventLogPath: nil, modelLogPath: nil)), key)
    }

    @discardableResult
    func enroll(_ req: EnrollRequest) throws -> EnrollResponse {
        try broker.client().call("POST", "/v1/enroll", body: req, as: EnrollResponse.self)
    }

    /// Asserts a refusal with `code` and `status`, that nothing was issued, and either (`audited`)
    /// that the host's latest attestation record carries the code — a refusal of a request the
    /// host's TPM provably made — or that nothing durable was written at all: a refusal of a
    /// request nobody authenticated (no verified quote) adds no attestation record and no event.
    func assertRefused(_ status: Int, _ code: String, audited: Bool = true, file: StaticString = #filePath, line: UInt = #line,
                       _ body: () throws -> Void) throws {
        let issuedBefore = try broker.status().certificates.count
        let historyBefore = try history()
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let f = error as? APIFailure else { return XCTFail("expected an API refusal, got \(error)", file: file, line: line) }
            XCTAssertEqual(f.error.code, code, f.description, file: file, line: line)
            XCTAssertEqual(f.status, status, f.description, file: file, line: line)
            XCTAssertFalse(f.error.message.isEmpty, file: file, line: line)
        }
        let after = try broker.status()
        XCTAssertEqual(after.certificates.count, issuedBefore, "a refusal issued a certificate", file: file, line: line)
        if audited {
            let last = after.hosts.first { $0.hostId == hostID }?.lastAttestation
            XCTAssertEqual(last?.result, "rejected", file: file, line: line)
            XCTAssertEqual(last?.codes.first, code, file: file, line: line)
        } else {
            let now = try history()
            XCTAssertEqual(now.attestations, historyBefore.attestations, "an unauthenticated refusal wrote to the audit trail", file: file, line: line)
            XCTAssertEqual(now.events, historyBefore.events, "an unauthenticated refusal published an event", file: file, line: line)
        }
    }

    /// How many attestation records and events the broker holds, leaving out only what the
    /// scheduler writes when a pull finds no attester: a host activated with an unreachable
    /// attester URL gets, about two seconds later and whatever the test is doing, a `fault` (or,
    /// past the grace, `reattestation`) record whose codes are all pull faults and a
    /// `host.unreachable` / `host.untrusted` event whose public code is `no_evidence`. No request
    /// can write either, so every record and event a request could write is still counted.
    func history() throws -> (attestations: Int, events: Int) {
        let pullFaults: Set = ["attester_unreachable", "attester_timeout", "attester_fault"]
        let page = try broker.admin().call("GET", "/v1/attestations?limit=1000", as: AttestationPage.self)
        let records = page.items.filter { a in !((a.kind == "fault" || a.kind == "reattestation") && !a.codes.isEmpty && Set(a.codes).isSubset(of: pullFaults)) }
        let r = try TestEnv.run("/usr/bin/sqlite3", [broker.dataDir.appendingPathComponent("vouch.db").path, """
            SELECT COUNT(*) FROM events WHERE NOT ((type = 'host.unreachable' AND json_extract(data, '$.code') = 'no_evidence')
              OR (type = 'host.untrusted' AND json_extract(data, '$.codes') = 'no_evidence'))
            """])
        guard r.status == 0, let events = Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw VouchError(.internalError, "sqlite3 could not count the events: \(r.stderr)")
        }
        return (records.count, events)
    }

    func testGenuineRequestIsIssuedAndItsNonceCannotBeReplayed() throws {
        let (req, key) = try request()
        let issued = try enroll(req)
        let cert = try Certificate(pem: issued.certificate)
        XCTAssertTrue(try cert.publicKey.isEqual(to: key.publicKey))
        XCTAssertEqual(issued.spiffeId, "spiffe://vouch.test/host/\(hostID!)/agent/agent")
        try assertRefused(409, "nonce_reused", audited: false) { try enroll(req) }
    }

    /// Finding: concurrent enrollments were refused `clock_regressed` when quotes the TPM made in
    /// clock order reached the broker out of order. A quote is compared only with evidence recorded
    /// before its nonce was issued. (A real rollback: EvidenceTests.testTPMStateRollbackIsRefused.)
    func testOutOfOrderQuotesAreNotARollback() throws {
        let (first, _) = try request(name: "first")
        usleep(50_000)   // the TPM clock moves on
        let (second, _) = try request(name: "second")
        XCTAssertNoThrow(try enroll(second))
        XCTAssertNoThrow(try enroll(first), "an earlier quote arriving later is no rollback")
    }

    /// Finding: an enrollment naming a public host id with a bogus nonce became an audit record,
    /// the host's "last attestation" and a public event. Nothing unauthenticated is written; and
    /// challenges, which anyone may ask for, store nothing either.
    func testUnauthenticatedRequestsWriteNothing() throws {
        let before = try history(), lastBefore = try broker.status().hosts.first?.lastAttestation?.at
        for _ in 0..<50 {
            _ = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID), as: ChallengeResponse.self)
        }
        XCTAssertEqual(try broker.rowCount("used_nonces"), 0)
        var (bogus, _) = try request()
        bogus.nonce = Hex.encode(try Crypto.randomBytes(32))
        try assertRefused(403, "nonce_unknown", audited: false) { try enroll(bogus) }
        XCTAssertEqual(try history().attestations, before.attestations)
        XCTAssertEqual(try broker.status().hosts.first?.lastAttestation?.at, lastBefore)
    }

    /// Host-chosen names never reach a SPIFFE ID or the broker's outbound connections unchecked.
    func testRegistrationInputsAreChecked() throws {
        let device = try TPMDevice(tcti: tpm.tcti)
        let (_, ekPublic) = try device.endorsementKey()
        let ekCert = try device.readEKCertificate()
        let (_, akPublic) = try device.createAttestationKey(.eccP256)
        device.close()
        func register(hostname: String, url: String? = nil) throws {
            _ = try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
                ekCertificate: Base64.encode(ekCert), ekPublic: Base64.encode(ekPublic), akPublic: Base64.encode(akPublic),
                hostname: hostname, attesterURL: url), as: RegisterHostResponse.self)
        }
        for name in ["..", ".", "a..b", "-a", "a/b", "a b", String(repeating: "a", count: 64)] {
            try assertRefused(400, "bad_request", audited: false) { try register(hostname: name) }
        }
        for url in ["http://h:1", "https://user:pw@h:1", "https://h:1/?q=1", "https://0.0.0.0:1", "https://224.0.0.1:1", "https://h_/x", "https://h:0"] {
            try assertRefused(400, "bad_request", audited: false) { try register(hostname: "ok", url: url) }
        }
        XCTAssertNoThrow(try register(hostname: "Gpu-7.Example", url: "https://gpu-7.example:9443/attester"))
    }

    func testUnknownHost() throws {
        let (req, _) = try request(host: String(repeating: "0", count: 32))
        try assertRefused(404, "unknown_host", audited: false) { try enroll(req) }
        try assertRefused(404, "unknown_host", audited: false) {
            _ = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: String(repeating: "f", count: 32)), as: ChallengeResponse.self)
        }
        try assertRefused(400, "bad_request", audited: false) {
            _ = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: "../../etc/passwd"), as: ChallengeResponse.self)
        }
    }

    func testBadSignatureAndTamperedQuote() throws {
        var (req, _) = try request()
        var sig = try Base64.decode(req.quote!.signature, field: "")
        sig[sig.count - 3] ^= 0x01
        req.quote!.signature = Base64.encode(sig)
        try assertRefused(403, "quote_signature_invalid", audited: false) { try enroll(req) }

        var (req2, _) = try request()
        var attest = try Base64.decode(req2.quote!.attest, field: "")
        attest[attest.count - 1] ^= 0x01
        req2.quote!.attest = Base64.encode(attest)
        try assertRefused(403, "quote_signature_invalid", audited: false) { try enroll(req2) }

        var (req3, _) = try request()
        req3.quote!.signature = Base64.encode([0x00, 0x18, 0x00])
        try assertRefused(400, "quote_malformed", audited: false) { try enroll(req3) }
    }

    /// The AK's template decides the hash: a signature naming another one is refused before it is
    /// verified, with its own code. Like every refusal before the AK's signature verifies, it is
    /// unauthenticated and writes nothing.
    func testSignatureNamingAnotherHashThanTheAKs() throws {
        var (req, _) = try request()
        var sig = try Base64.decode(req.quote!.signature, field: "")
        XCTAssertEqual(Array(sig[2..<4]), [0x00, 0x0B], "the attester's AK signs with SHA-256")
        sig[3] = 0x04   // TPMT_SIGNATURE.hash: SHA-1
        req.quote!.signature = Base64.encode(sig)
        try assertRefused(403, "quote_signature_scheme_mismatch", audited: false) { try enroll(req) }
    }

    func testWrongReusedAndForeignNonces() throws {
        var (req, _) = try request()
        req.nonce = Hex.encode(try Crypto.randomBytes(32))
        try assertRefused(403, "nonce_unknown", audited: false) { try enroll(req) }
        var (bad, _) = try request()
        bad.nonce = "not-hex"
        try assertRefused(400, "bad_request", audited: false) { try enroll(bad) }
    }

    func testExpiredNonce() throws {
        // The shortest TTL a broker takes: a pull (1 s at the least) must end before its nonce expires.
        let shortTTL = try BrokerHarness(trusting: tpm, extraArgs: ["--challenge-ttl", "1.5s", "--pull-timeout", "1s"])
        broker = shortTTL
        attester = shortTTL.attester(for: tpm)
        hostID = try attester.register()
        let (req, _) = try request()
        Thread.sleep(forTimeInterval: 1.7)
        try assertRefused(403, "nonce_expired", audited: false) { try enroll(req) }
    }

    func testForgedPCRValue() throws {
        var (req, _) = try request()
        req.quote!.pcrs["sha256"]!["3"] = String(repeating: "11", count: 32)
        try assertRefused(403, "pcr_digest_mismatch", audited: false) { try enroll(req) }
        var (missing, _) = try request()
        missing.quote!.pcrs["sha256"]!["3"] = nil
        try assertRefused(403, "pcr_digest_mismatch", audited: false) { try enroll(missing) }
    }

    func testPCRValueNotAllowedByPolicy() throws {
        // Measure something into PCR 7 (Secure Boot policy): the host no longer matches the policy.
        let extend = try tpm.tools("tpm2_pcrextend", ["7:sha256=" + String(repeating: "ab", count: 32)])
        XCTAssertEqual(extend.status, 0, extend.stderr)
        let (req, _) = try request()
        try assertRefused(403, "pcr_not_allowed") { try enroll(req) }
        do {
            let (req2, _) = try request()
            try enroll(req2)
            XCTFail("a host with a measured PCR 7 was issued a certificate")
        } catch let f as APIFailure {
            XCTAssertEqual(f.error.violations?.map(\.path), ["pcrs.values.7"])
            XCTAssertEqual(f.error.violations?.first?.expected, "one of [\(String(repeating: "0", count: 64))]")
        }
        // And through the real attester and CLI: a clear reason and a non-zero exit.
        let (process, socket) = try broker.startAttesterProcess(for: tpm)
        defer { process.stop() }
        let cli = try broker.vouch(["enroll", "--name", "cli-agent", "--out", broker.dir.appendingPathComponent("cli").path], socket: socket)
        XCTAssertEqual(cli.status, 1)
        XCTAssertTrue(cli.stderr.contains("pcr_not_allowed") && cli.stderr.contains("pcrs.values.7"), cli.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: broker.dir.appendingPathComponent("cli/cli-agent.pem").path))
    }

    func testMalformedCSRAndBrokenProofOfPossession() throws {
        var (req, _) = try request()
        req.csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        try assertRefused(400, "csr_malformed", audited: false) { try enroll(req) }

        var (req2, _) = try request()
        let lines = try XCTUnwrap(req2.csr).split(separator: "\n").map(String.init)
        var der = try Base64.decode(lines.dropFirst().dropLast().joined(), field: "csr")
        der[der.count - 2] ^= 0x01   // inside the signature
        req2.csr = "-----BEGIN CERTIFICATE REQUEST-----\n\(Base64.encode(der))\n-----END CERTIFICATE REQUEST-----\n"
        try assertRefused(400, "csr_signature_invalid", audited: false) { try enroll(req2) }
    }

    func testCSRKeyNotTheOneBoundIntoTheQuote() throws {
        let (req, _) = try request(bindKey: try PrivateKey.generate())
        try assertRefused(403, "qualifying_data_mismatch", audited: false) { try enroll(req) }
    }

    func testQuoteFromAnotherHostsAK() throws {
        // Host B's TPM quotes for host A's challenge: A's AK does not verify it.
        let other = try SwTPM()
        let foreign = broker.attester(for: other)
        let (req, _) = try request(using: foreign)
        try assertRefused(403, "quote_signature_invalid", audited: false) { try enroll(req) }
    }

    func testInvalidAgentName() throws {
        let (req, _) = try request(name: "Agent/../x")
        try assertRefused(400, "agent_name_invalid", audited: false) { try enroll(req) }
    }

    func testUntrustedEKAndUnactivatedAK() throws {
        // A TPM whose EK certificate comes from a CA the broker does not trust.
        let stranger = try SwTPM()
        try assertRefused(403, "ek_untrusted", audited: false) { try broker.attester(for: stranger).register() }

        // The same TPM registers again (anyone holding its public EK certificate could): nothing
        // about the active host changes until activation proves the new AK.
        let device = try TPMDevice(tcti: tpm.tcti)
        let (_, ekPublic) = try device.endorsementKey()
        let ekCert = try device.readEKCertificate()
        let (_, akPublic) = try device.createAttestationKey(.rsa2048)
        device.close()
        let before = JSONCodec.encode(try broker.status().hosts.first { $0.hostId == hostID })
        let historyBefore = try broker.admin().call("GET", "/v1/attestations?hostId=\(hostID!)", as: AttestationPage.self).items.count
        let reg = try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
            ekCertificate: Base64.encode(ekCert), ekPublic: Base64.encode(ekPublic), akPublic: Base64.encode(akPublic), hostname: "h",
            attesterURL: "https://attacker.example:1"), as: RegisterHostResponse.self)
        XCTAssertEqual(reg.hostId, hostID, "host identity follows the EK")
        XCTAssertNoThrow(try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID), as: ChallengeResponse.self),
                         "the active AK still serves")
        // Wrong answers are refused, write nothing, and do not spoil the registration.
        for _ in 0..<5 {
            try assertRefused(403, "activation_failed", audited: false) {
                _ = try broker.client().call("POST", "/v1/hosts/\(hostID!)/activate", body: ActivateHostRequest(
                    secret: Base64.encode([UInt8](repeating: 1, count: 32)), registration: reg.registration), as: ActivateHostResponse.self)
            }
        }
        // A ticket this broker did not seal, or for another host, is refused.
        var forged = try XCTUnwrap(reg.registration)
        forged.replaceSubrange(forged.startIndex..<forged.index(forged.startIndex, offsetBy: 4), with: "eyJh")
        try assertRefused(403, "registration_invalid", audited: false) {
            _ = try broker.client().call("POST", "/v1/hosts/\(hostID!)/activate", body: ActivateHostRequest(
                secret: Base64.encode([UInt8](repeating: 1, count: 32)), registration: forged + "x"), as: ActivateHostResponse.self)
        }
        XCTAssertEqual(JSONCodec.encode(try broker.status().hosts.first { $0.hostId == hostID }), before, "registration and wrong answers changed the host")
        XCTAssertEqual(try broker.admin().call("GET", "/v1/attestations?hostId=\(hostID!)", as: AttestationPage.self).items.count, historyBefore,
                       "unauthenticated requests wrote to the audit trail")
        // The right answer activates the new AK (and only now takes the new attester URL).
        let real = try TPMDevice(tcti: tpm.tcti)
        let (ek, _) = try real.endorsementKey()
        let (ak, _) = try real.createAttestationKey(.rsa2048)
        let secret = try real.activateCredential(ak: ak, ek: ek, credentialBlob: Base64.decode(reg.credentialBlob ?? "", field: ""),
                                                 encryptedSecret: Base64.decode(reg.encryptedSecret ?? "", field: ""))
        real.close()
        let activated = try broker.client().call("POST", "/v1/hosts/\(hostID!)/activate", body: ActivateHostRequest(
            secret: Base64.encode(secret), hostCSR: try CSR.create(key: try PrivateKey.generate(), commonName: "h").pem, registration: reg.registration),
            as: ActivateHostResponse.self)
        XCTAssertEqual(activated.akState, "active")
        // The EK public of another TPM under this TPM's EK certificate.
        let otherDevice = try TPMDevice(tcti: stranger.tcti)
        let (_, strangerEK) = try otherDevice.endorsementKey()
        otherDevice.close()
        try assertRefused(403, "ek_mismatch", audited: false) {
            _ = try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
                ekCertificate: Base64.encode(ekCert), ekPublic: Base64.encode(strangerEK), akPublic: Base64.encode(akPublic), hostname: "h"),
                as: RegisterHostResponse.self)
        }
        // An EK presented as the AK (a decryption key, not a restricted signing key).
        try assertRefused(403, "ak_rejected", audited: false) {
            _ = try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
                ekCertificate: Base64.encode(ekCert), ekPublic: Base64.encode(ekPublic), akPublic: Base64.encode(ekPublic), hostname: "h"),
                as: RegisterHostResponse.self)
        }
    }

    func testAdminAuthAndMalformedBodies() throws {
        let anonymous = broker.client()
        try assertRefused(401, "unauthorized", audited: false) { _ = try anonymous.call("GET", "/v1/status", as: StatusResponse.self) }
        var wrong = try broker.admin()
        wrong.bearerToken = "vouch_guess"
        try assertRefused(401, "unauthorized", audited: false) { _ = try wrong.call("POST", "/v1/revoke", body: RevokeRequest(hostId: hostID), as: RevokeResponse.self) }
        try assertRefused(400, "bad_request", audited: false) { _ = try anonymous.raw("POST", "/v1/enroll", body: Array("{not json".utf8)) }
        try assertRefused(400, "bad_request", audited: false) { _ = try anonymous.raw("POST", "/v1/enroll", body: Array("{}".utf8)) }
        try assertRefused(413, "body_too_large", audited: false) { _ = try anonymous.raw("POST", "/v1/enroll", body: [UInt8](repeating: 0x20, count: 2 << 20)) }
        try assertRefused(404, "not_found", audited: false) { _ = try anonymous.raw("GET", "/v1/nothing") }
        try assertRefused(405, "method_not_allowed", audited: false) { _ = try anonymous.raw("DELETE", "/v1/crl") }
        try assertRefused(404, "not_found", audited: false) {
            _ = try broker.admin().call("POST", "/v1/revoke", body: RevokeRequest(serial: "abcdef"), as: RevokeResponse.self)
        }
        try assertRefused(400, "bad_request", audited: false) {
            _ = try broker.admin().call("POST", "/v1/revoke", body: RevokeRequest(serial: "abc", hostId: hostID), as: RevokeResponse.self)
        }
        try assertRefused(400, "bad_request", audited: false) {
            _ = try broker.admin().call("POST", "/v1/revoke", body: RevokeRequest(serial: "zz'; DROP TABLE certificates;--"), as: RevokeResponse.self)
        }
    }
}
