import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import VouchTPMWire

/// Registration and credential activation. Registration is unauthenticated — an EK certificate
/// is public — so it only answers a challenge: it writes nothing and changes nothing about an
/// existing host. Everything about a host (its AK, host name, mode, attester URL, key pin, host
/// certificate) changes only at activation, which proves the AK lives in the TPM holding the
/// certified EK, in one version-checked transaction. The host certificates issued at
/// activation are made here too.
public struct RegistrationService: BrokerPart, Sendable {
    let context: BrokerContext

    /// "sha256//BASE64(SHA-256(SubjectPublicKeyInfo))", the pin format libcurl takes.
    static func keyPin(_ key: PublicKey) throws -> String { "sha256//" + Base64.encode(Crypto.sha256(try key.spkiDER)) }

    /// Issues the host's TLS certificate (SPIFFE ID spiffe://TD/host/ID, client and server auth)
    /// for a CSR whose self-signature verifies. It secures transport between broker and attester;
    /// it is not an attestation result and is never listed with agent certificates.
    func issueHostCertificate(hostID: String, csrPEM: String, now: Date) throws -> Certificate {
        let verified: VerifiedCertificateRequest?
        do { verified = try UnverifiedCertificateRequest(pemOrDER: Array(csrPEM.utf8)).verify() } catch let e as VouchError {
            throw VouchError(.csrMalformed, e.message, context: ["field": "hostCSR"])
        }
        guard let csr = verified else {
            throw VouchError(.csrSignatureInvalid, "host CSR signature does not verify with its own key", context: ["field": "hostCSR"])
        }
        let ca = authorities.current
        let profile = LeafProfile(uriSANs: [config.hostSpiffeID(hostID)],
                                  notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(config.hostCertificateTTL), usage: .host)
        return try ca.signer.issue(publicKey: csr.publicKey, profile: profile, serial: nil)
    }

    /// Checks a push request's TLS client certificate: present (verified by the TLS layer against
    /// the broker's CAs), naming this host, and the one issued at its latest activation.
    public func authenticateHost(id: String, clientCertificate der: [UInt8]?) throws {
        guard let der else {
            throw VouchError(.clientCertificateRequired, "this endpoint needs the host certificate as TLS client certificate", context: ["hostId": id])
        }
        let cert = try Certificate(der: der)
        guard cert.uriSANs == [config.hostSpiffeID(id)], let trust = try store.trust(hostID: id), trust.hostCertificateSerial == cert.serialHex else {
            throw VouchError(.clientCertificateMismatch, "the client certificate is not this host's current host certificate",
                             context: ["hostId": id, "got": cert.uriSANs.first ?? cert.subject])
        }
    }

    /// Registers (or re-registers) a host. Checks, in order: the request is well formed (host
    /// name a DNS name, labels, attester URL an https URL to a host name or public address;
    /// exactly one of the TPM fields and `tee`);
    /// the EK certificate chains to a trusted TPM manufacturer and certifies the EK; a policy
    /// applies; the AK is a restricted signing key of an allowed type; the host is not blocked;
    /// the labels equal the registered host's (a host cannot pick another policy). Then it makes
    /// a credential only that TPM can activate, for that AK's name, and returns it with a sealed
    /// ticket the host sends back with the answer. A CPU TEE host (`tee`) is registered in one
    /// step instead (`registerTEEHost`).
    public func registerHost(_ req: RegisterHostRequest) throws -> RegisterHostResponse {
        let hostname = try Self.checkedHostname(req.hostname)
        let labels = try Self.checkedLabels(req.labels)
        let mode: AttestationMode = req.attesterURL == nil ? .push : .pull
        if let url = req.attesterURL { try Self.checkAttesterURL(url) }
        let now = clock.now()
        if let tee = req.tee {
            guard req.ekCertificate == nil, req.ekPublic == nil, req.akPublic == nil, req.simulated == nil else {
                throw VouchError(.badRequest, "a CPU TEE host registers with tee alone: no ekCertificate, ekPublic, akPublic or simulated",
                                 context: ["field": "tee"])
            }
            return try registerTEEHost(tee, hostname: hostname, labels: labels, attesterURL: req.attesterURL, now: now)
        }
        if req.simulated == true {
            return try registerSimulatedHost(req, hostname: hostname, labels: labels, mode: mode, now: now)
        }
        let (ekCertificateB64, ekPublicB64, akPublicB64) = (try Self.required(req.ekCertificate, "ekCertificate"), try Self.required(req.ekPublic, "ekPublic"),
                                                            try Self.required(req.akPublic, "akPublic"))
        let ekCert = try Base64.decode(ekCertificateB64, field: "ekCertificate")
        let ekPublic = try Base64.decode(ekPublicB64, field: "ekPublic")
        let akPublic = try Base64.decode(akPublicB64, field: "akPublic")
        let endorsement = try EndorsementVerifier.verify(ekCertificateDER: ekCert, ekPublic: ekPublic, trust: ekTrust, now: now).get()
        guard let policy = policies.current.select(labels: labels, ekIssuer: endorsement.ekCertificateIssuer, platform: .tpm) else {
            metrics.registration(ErrorCode.noPolicy.rawValue)
            throw VouchError(.noPolicy, "no policy applies to this host (its labels and EK issuer match none)", context: ["ekIssuer": endorsement.ekCertificateIssuer])
        }
        let (ak, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms, allowSHA1: policy.allowSHA1AK).get()
        let version = try checkMayRegister(hostID: endorsement.hostID, labels: labels)
        let secret = try Crypto.randomBytes(32)
        let made = try CredentialProtection.makeCredential(ek: endorsement.ekPublic, objectName: CredentialProtection.name(of: ak), credential: secret)
        let expires = now.addingTimeInterval(config.activationTTL)
        let ticket = RegistrationTicket(hostId: endorsement.hostID, hostname: hostname, ekPublic: ekPublicB64, ekCertificate: ekCertificateB64,
                                        ekIssuer: endorsement.ekCertificateIssuer, labels: labels, akPublic: akPublicB64, akAlgorithm: kind.rawValue,
                                        activationDigest: Hex.encode(Crypto.sha256(secret)), expiresAt: expires.timeIntervalSince1970,
                                        mode: mode.rawValue, attesterURL: req.attesterURL, simulated: false, hostVersion: version)
        metrics.registration("registered")
        log("host \(endorsement.hostID) registration challenged (\(hostname)); AK \(kind.rawValue) awaits credential activation; \(mode.rawValue) mode")
        return RegisterHostResponse(hostId: endorsement.hostID, credentialBlob: Base64.encode(made.credentialBlob),
                                    encryptedSecret: Base64.encode(made.encryptedSecret), activationExpiresAt: expires.iso8601,
                                    registration: ticket.seal(key: ticketKey))
    }

    /// The EK issuer recorded for simulated hosts; policies can match it (`match.ekIssuer`).
    public static let simulatedEKIssuer = "simulated (insecure, no TPM)"

    /// Registers a host of a simulated fleet: a software AK and no TPM, so nothing proves where
    /// the AK lives. Refused unless the broker allows simulated hosts; marked simulated everywhere.
    /// The activation secret is returned in the clear (`credentialBlob`, empty `encryptedSecret`), so
    /// activation runs the same path as for real hosts.
    private func registerSimulatedHost(_ req: RegisterHostRequest, hostname: String, labels: [String: String], mode: AttestationMode, now: Date) throws -> RegisterHostResponse {
        guard config.allowSimulatedHosts else {
            metrics.registration("simulated_hosts_refused")
            throw VouchError(.simulatedHostsRefused, "this broker does not accept simulated hosts (software AKs prove nothing)", context: ["field": "simulated"])
        }
        let akPublicB64 = try Self.required(req.akPublic, "akPublic")
        let akPublic = try Base64.decode(akPublicB64, field: "akPublic")
        guard let policy = policies.current.select(labels: labels, ekIssuer: Self.simulatedEKIssuer, platform: .tpm) else {
            throw VouchError(.noPolicy, "no policy applies to this simulated host", context: ["ekIssuer": Self.simulatedEKIssuer])
        }
        let (_, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms, allowSHA1: policy.allowSHA1AK).get()
        let id = Hex.encode(Crypto.sha256(Array("simulated".utf8) + akPublic).prefix(16))
        let version = try checkMayRegister(hostID: id, labels: labels)
        let secret = try Crypto.randomBytes(32)
        let expires = now.addingTimeInterval(config.activationTTL)
        let ticket = RegistrationTicket(hostId: id, hostname: hostname, ekPublic: "", ekCertificate: "", ekIssuer: Self.simulatedEKIssuer, labels: labels,
                                        akPublic: akPublicB64, akAlgorithm: kind.rawValue, activationDigest: Hex.encode(Crypto.sha256(secret)),
                                        expiresAt: expires.timeIntervalSince1970, mode: mode.rawValue, attesterURL: req.attesterURL, simulated: true,
                                        hostVersion: version)
        metrics.registration("registered_simulated")
        return RegisterHostResponse(hostId: id, credentialBlob: Base64.encode(secret), encryptedSecret: "", activationExpiresAt: expires.iso8601,
                                    registration: ticket.seal(key: ticketKey))
    }

    /// A blocked host cannot register; a registered host keeps the labels it registered with (an
    /// operator deletes it to change them), so it cannot move itself under a laxer policy. (A
    /// deleted host is not found here; the store still refuses to revive a blocked one.)
    /// Returns the host record's version (0: none), which the ticket carries.
    private func checkMayRegister(hostID: String, labels: [String: String]) throws -> Int64 {
        guard let existing = try store.host(id: hostID) else { return 0 }
        if let reason = existing.blockedReason {
            metrics.registration(ErrorCode.hostRevoked.rawValue)
            throw VouchError(.hostRevoked, "this host was revoked by an operator and cannot register until unblocked", context: ["hostId": hostID, "reason": reason])
        }
        if existing.labels != labels {
            metrics.registration(ErrorCode.labelsImmutable.rawValue)
            throw VouchError(.labelsImmutable, "a registered host keeps its labels; an operator deletes the host (vouch host delete) to change them",
                             context: ["hostId": hostID, "field": "labels"])
        }
        return existing.version
    }

    /// Completes credential activation: the host proves its TPM holds both the certified EK and
    /// the AK. Checks, in order: the ticket is this broker's (MAC) and names this host; it has not
    /// expired; the answer hashes to the ticket's activation digest (a wrong answer writes
    /// nothing and does not spoil the registration); a policy still applies and allows the AK; a
    /// host certificate CSR is well formed (pull mode needs one); the host record is the version
    /// the ticket was issued against (so a ticket activates once, and never after a block, a
    /// deletion or another activation). Then, in one transaction that fails if the host changed
    /// since it was read: the host is not blocked and keeps its labels; its AK, host name, mode,
    /// URL, host certificate serial and key pin are replaced; its trust state and history stay.
    public func activateHost(id: String, _ req: ActivateHostRequest) throws -> ActivateHostResponse {
        guard Hex.isLowercase(id, length: 32...32) else {
            throw VouchError(.badRequest, "host id must be 32 lowercase hex digits", context: ["field": "hostId"])
        }
        guard let sealed = req.registration else {
            throw VouchError(.badRequest, "send the registration ticket the registration answered with", context: ["field": "registration"])
        }
        let ticket = try RegistrationTicket.open(sealed, key: ticketKey)
        guard ticket.hostId == id else {
            throw VouchError(.registrationInvalid, "the registration ticket is for another host", context: ["field": "registration", "hostId": id])
        }
        let now = clock.now()
        let expires = Date(timeIntervalSince1970: ticket.expiresAt)
        guard now < expires else {
            throw VouchError(.activationExpired, "credential activation window has passed; register again", context: ["hostId": id, "expiredAt": expires.iso8601])
        }
        let secret = try Base64.decode(req.secret, field: "secret")
        guard constantTimeEqual(Hex.encode(Crypto.sha256(secret)).utf8.map { $0 }, Array(ticket.activationDigest.utf8)) else {
            metrics.registration(ErrorCode.activationFailed.rawValue)
            log("host \(id): wrong credential activation answer (nothing changed)")
            throw VouchError(.activationFailed, "credential activation answer is wrong: the AK is not in the TPM that holds the certified EK", context: ["hostId": id])
        }
        let mode = AttestationMode(rawValue: ticket.mode) ?? .push
        guard req.hostCSR != nil || mode == .push else {
            throw VouchError(.badRequest, "pull mode needs a host certificate: send hostCSR", context: ["field": "hostCSR"])
        }
        let akPublic = try Base64.decode(ticket.akPublic, field: "registration.akPublic")
        guard let policy = policies.current.select(labels: ticket.labels, ekIssuer: ticket.ekIssuer, platform: .tpm) else {
            throw VouchError(.noPolicy, "no policy applies to this host any more", context: ["hostId": id])
        }
        let (_, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms, allowSHA1: policy.allowSHA1AK).get()
        let ak = try TPMTPublic(tpm2bPublic: akPublic)
        let existing = try store.host(id: id)
        try requireMayActivate(existing, ticket: ticket)
        guard (existing?.version ?? 0) == ticket.hostVersion else {
            throw VouchError(.registrationInvalid, "the host changed since this registration (activated, blocked or deleted); register again",
                             context: ["field": "registration", "hostId": id])
        }
        let hostCertificate = try req.hostCSR.map { try issueHostCertificate(hostID: id, csrPEM: $0, now: now) }
        var host = HostRecord(id: id, hostname: ticket.hostname, ekPublic: try Base64.decode(ticket.ekPublic, field: "registration.ekPublic"),
                              ekCertificate: try Base64.decode(ticket.ekCertificate, field: "registration.ekCertificate"), ekIssuer: ticket.ekIssuer,
                              labels: ticket.labels, akPublic: akPublic, akName: CredentialProtection.name(of: ak), akAlgorithm: kind.rawValue,
                              akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0,
                              registeredAt: existing?.registeredAt ?? now, updatedAt: now)
        host.version = existing?.version ?? 0
        var trust = (existing == nil ? nil : try store.trust(hostID: id)) ?? HostTrust(hostID: id, since: now, mode: mode, simulated: ticket.simulated)
        trust.mode = mode
        trust.attesterURL = ticket.attesterURL
        trust.hostCertificateSerial = hostCertificate?.serialHex
        trust.hostKeyPin = try hostCertificate.map { try Self.keyPin($0.publicKey) }
        let record = AttestationRecord(hostID: id, at: now, kind: .activation, trusted: false, codes: [],
                                       message: (ticket.simulated ? "SIMULATED host (software AK, no TPM); " : "EK verified (\(ticket.ekIssuer)); ") +
                                                "AK \(ticket.akAlgorithm) activated; \(mode.rawValue) mode" + (hostCertificate.map { "; host certificate \($0.serialHex)" } ?? ""),
                                       serial: hostCertificate?.serialHex)
        do {
            try store.activateHost(host, trust: trust, record: record)
        } catch let e as VouchError where e.code == .conflict {
            // The host changed (a block, a deletion, another activation) since it was read.
            throw VouchError(.registrationInvalid, "the host changed during this activation; register again",
                             context: ["field": "registration", "hostId": id])
        }
        // A new AK and boot: what was verified of the host's event log before is no longer its.
        verifiedLogs.remove(hostID: id)
        log("host \(id) AK activated (\(ticket.hostname); \(mode.rawValue) mode)")
        return ActivateHostResponse(hostId: id, akState: AKState.active.rawValue, hostCertificate: try hostCertificate?.pem,
                                    caCertificate: hostCertificate == nil ? nil : try authorities.current.chainPEM,
                                    brokerSpiffeId: config.brokerSpiffeID)
    }

    private func requireMayActivate(_ existing: HostRecord?, ticket: RegistrationTicket) throws {
        guard let existing else { return }
        if let reason = existing.blockedReason {
            throw VouchError(.hostRevoked, "this host was revoked by an operator and cannot register until unblocked", context: ["hostId": existing.id, "reason": reason])
        }
        if existing.labels != ticket.labels {
            throw VouchError(.labelsImmutable, "a registered host keeps its labels", context: ["hostId": existing.id, "field": "labels"])
        }
    }

    // MARK: Request checks

    /// A field a TPM registration needs (`bad_request` naming it when absent).
    static func required(_ value: String?, _ field: String) throws -> String {
        guard let value else {
            throw VouchError(.badRequest, "a TPM host registers with ekCertificate, ekPublic and akPublic (a CPU TEE host with tee)", context: ["field": field])
        }
        return value
    }

    /// A host name as DNS allows it (`HostFields.isHostname`), lowercased; empty for none.
    static func checkedHostname(_ name: String?) throws -> String {
        let hostname = (name ?? "").lowercased()
        guard hostname.isEmpty || HostFields.isHostname(hostname) else {
            throw VouchError(.badRequest, "hostname must be a DNS name", context: ["field": "hostname"])
        }
        return hostname
    }

    static func checkedLabels(_ given: [String: String]?) throws -> [String: String] {
        let labels = given ?? [:]
        guard labels.count <= HostFields.maxLabels else { throw VouchError(.labelsInvalid, "at most 64 labels", context: ["field": "labels"]) }
        for (k, v) in labels {
            guard k.range(of: Policy.labelPattern, options: .regularExpression) != nil, HostFields.isLabelValue(v) else {
                throw VouchError(.labelsInvalid, "label names are 1-63 of a-z, 0-9, '.', '_', '-', '/'; values up to 253 printable characters",
                                 context: ["field": "labels.\(k.prefix(64))"])
            }
        }
        return labels
    }

    /// The attester URL the broker will connect to: `https://`, a host, an optional port 1-65535
    /// and path; no user info, query or fragment. The host is an IP literal as `inet_pton` reads it
    /// (IPv4 dotted decimal without leading zeros, IPv6 in brackets) or a DNS name whose last label
    /// is not numeric (so `2130706433`, `0x7f.1` or `0177.0.0.1` are never read as an address one
    /// way here and another by the resolver). Refused: unspecified, multicast, broadcast and
    /// link-local addresses (169.254.0.0/16 holds cloud metadata services; fe80::/10), also as
    /// IPv4-mapped IPv6. Loopback and private addresses are allowed — attesters live on internal
    /// networks, and single-machine deployments use loopback. The URL takes effect only after the
    /// host proved its TPM (activation), and how a pull fails is never published to
    /// unauthenticated readers (`publicCodes`).
    static func checkAttesterURL(_ url: String) throws {
        let invalid = VouchError(.badRequest, "attesterURL must be an https URL naming a usable host (no user info, query or fragment)", context: ["field": "attesterURL"])
        guard url.count <= 2048, url.hasPrefix("https://"), !url.contains(where: { $0.isWhitespace || !$0.isASCII }),
              let parts = URLComponents(string: url), parts.scheme == "https", let host = parts.host, !host.isEmpty,
              parts.user == nil, parts.password == nil, parts.query == nil, parts.fragment == nil else { throw invalid }
        if let port = parts.port, !(1...65535).contains(port) { throw invalid }
        if host.hasPrefix("[") || host.contains(":") {
            var a = in6_addr()
            let literal = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            guard inet_pton(AF_INET6, literal, &a) == 1 else { throw invalid }
            let b = withUnsafeBytes(of: a) { Array($0) }
            let mapped = b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xff && b[11] == 0xff
            guard !b.allSatisfy({ $0 == 0 }), b[0] != 0xff, !(b[0] == 0xfe && b[1] & 0xc0 == 0x80),
                  !mapped || Self.usableIPv4(Array(b[12..<16])) else { throw invalid }
            return
        }
        let labels = host.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        if labels.count == 4, labels.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) {
            var a = in_addr()
            guard !labels.contains(where: { $0.count > 1 && $0.first == "0" }), inet_pton(AF_INET, host, &a) == 1,
                  Self.usableIPv4(withUnsafeBytes(of: a) { Array($0) }) else { throw invalid }
            return
        }
        guard HostFields.isHostname(host.lowercased()), let last = labels.last,
              !last.allSatisfy(\.isNumber), !last.hasPrefix("0x") else { throw invalid }
    }

    /// Not 0.0.0.0/8, link-local 169.254.0.0/16, multicast, reserved or broadcast (224.0.0.0 and up).
    static func usableIPv4(_ o: [UInt8]) -> Bool {
        o.count == 4 && o[0] != 0 && !(o[0] == 169 && o[1] == 254) && o[0] < 224
    }
}
