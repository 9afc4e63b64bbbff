import Foundation
import VouchCore
import VouchCrypto
import VouchGRPC
import VouchSPIFFE

/// The SPIFFE Workload API (`SpiffeWorkloadAPI`) on the attester's workload socket: what
/// go-spiffe, py-spiffe, java-spiffe and Envoy's SDS bridge ask a SPIRE agent, answered with
/// attestation-backed identities (`WorkloadIdentities`).
///
/// Every call, in order:
/// 1. carries the `workload.spiffe.io: true` metadata, else INVALID_ARGUMENT (the Workload
///    Endpoint spec's guard against a browser or proxy relaying requests);
/// 2. is attested: the caller's selectors (`WorkloadAttestor`, from the socket's peer
///    credentials) must match at least one registration entry, else PERMISSION_DENIED — a
///    process that matches nothing never gets anyone's SVID;
/// 3. is answered from the entries it matches only.
/// FetchX509SVID streams the caller's SVIDs with the bundle, again at each rotation or bundle
/// change; when its identities are withdrawn (revocation, untrusted host, expiry) the stream ends
/// with PERMISSION_DENIED. FetchX509Bundles and FetchJWTBundles stream the bundles as they change.
/// FetchJWTSVID asks the broker (its cache first) for a JWT-SVID of each entitled identity, or of
/// the one named; ValidateJWTSVID checks a token against the broker's JWT keys and the audience.
public final class WorkloadAPIService: Sendable {
    public typealias Verify = @Sendable (_ token: String, _ audience: String, _ jwks: [UInt8]) throws -> (spiffeID: String, claims: [UInt8])
    let identities: WorkloadIdentities
    let attestor: WorkloadAttestor
    let trustDomain: String
    let verify: Verify
    /// How long a first fetch waits for its SVIDs to be issued.
    let issueWait: TimeInterval

    /// `attestor` nil: one that digests executables only when an entry has a sha256 selector.
    public init(identities: WorkloadIdentities, attestor: WorkloadAttestor? = nil, trustDomain: String,
                issueWait: TimeInterval = 30, verify: @escaping Verify) {
        self.identities = identities; self.trustDomain = trustDomain; self.issueWait = issueWait; self.verify = verify
        self.attestor = attestor ?? WorkloadAttestor(digestExecutables: identities.entries.entries.contains { $0.selectors.contains { $0.kind == .sha256 } })
    }

    public static let service = "/SpiffeWorkloadAPI/"

    public func handle(_ req: GRPCRequest, _ stream: GRPCResponseStream) throws {
        guard req.header("workload.spiffe.io") == "true" else {
            throw GRPCStatus(.invalidArgument, "security header missing from request")
        }
        guard req.method.hasPrefix(Self.service) else { throw GRPCStatus(.unimplemented, "unknown service") }
        switch req.method.dropFirst(Self.service.count) {
        case "FetchX509SVID":
            _ = try decode { try WorkloadAPI.X509SVIDRequest(protobuf: req.message) }
            try fetchX509SVID(try entitled(req), stream)
        case "FetchX509Bundles":
            _ = try decode { try WorkloadAPI.X509BundlesRequest(protobuf: req.message) }
            _ = try entitled(req)
            try streamBundles(stream) { _, bundle in WorkloadAPI.X509BundlesResponse(crl: [], bundles: ["spiffe://" + trustDomain: bundle]).protobuf }
        case "FetchJWTSVID":
            let r = try decode { try WorkloadAPI.JWTSVIDRequest(protobuf: req.message) }
            try stream.send(try fetchJWTSVID(r, try entitled(req)).protobuf)
        case "FetchJWTBundles":
            _ = try decode { try WorkloadAPI.JWTBundlesRequest(protobuf: req.message) }
            _ = try entitled(req)
            if identities.jwtKeys().jwks.isEmpty { identities.refreshJWTKeys() }
            try streamBundles(stream) { keys, _ in keys.isEmpty ? nil : WorkloadAPI.JWTBundlesResponse(bundles: ["spiffe://" + trustDomain: keys]).protobuf }
        case "ValidateJWTSVID":
            let r = try decode { try WorkloadAPI.ValidateJWTSVIDRequest(protobuf: req.message) }
            _ = try entitled(req)
            try stream.send(try validate(r).protobuf)
        default:
            throw GRPCStatus(.unimplemented, "unknown method \(req.method)")
        }
    }

    private func decode<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as VouchError { throw GRPCStatus(.invalidArgument, "malformed request: \(e.message)") }
    }

    /// The entries the caller matches (step 2).
    func entitled(_ req: GRPCRequest) throws -> [WorkloadEntry] {
        let selectors: Set<WorkloadSelector>
        do { selectors = try attestor.selectors(pid: req.peer.pid, uid: req.peer.uid, gid: req.peer.gid, connectedStartTime: req.peer.startTime) } catch {
            throw GRPCStatus(.permissionDenied, "the calling process could not be attested")
        }
        let matched = identities.entries.matching(selectors)
        guard !matched.isEmpty else { throw GRPCStatus(.permissionDenied, "no identity issued") }
        return matched
    }

    private func fetchX509SVID(_ entries: [WorkloadEntry], _ stream: GRPCResponseStream) throws {
        let agents = entries.map(\.agent)
        stream.onCancel { [identities] in identities.nudge() }
        identities.ensure(agents, timeout: issueWait) { stream.isCancelled }
        var sent: [String]?
        while !stream.isCancelled {
            let snap = identities.snapshot(agents)
            let state = snap.svids.map(\.serial) + [Hex.encode(Crypto.sha256(snap.bundle))]
            if state != sent {
                guard !snap.svids.isEmpty else {
                    throw GRPCStatus(.permissionDenied, agents.lazy.compactMap(identities.refusal).first ?? "no identity issued")
                }
                let svids = snap.svids.map {
                    WorkloadAPI.X509SVID(spiffeID: $0.spiffeID, x509SVID: $0.chainDER, x509SVIDKey: $0.keyPKCS8, bundle: snap.bundle, hint: $0.agent)
                }
                try stream.send(WorkloadAPI.X509SVIDResponse(svids: svids, crl: [], federatedBundles: [:]).protobuf)
                sent = state
            }
            identities.waitForChange(after: snap.generation, timeout: 30) { stream.isCancelled }
        }
    }

    /// Sends `make(jwtKeys, x509Bundle)` now and whenever it changes, until the client goes.
    private func streamBundles(_ stream: GRPCResponseStream, _ make: ([UInt8], [UInt8]) -> [UInt8]?) throws {
        stream.onCancel { [identities] in identities.nudge() }
        var sent: [UInt8]?
        while !stream.isCancelled {
            let generation = identities.currentGeneration
            let keys = identities.jwtKeys().jwks, bundle = identities.snapshot([]).bundle
            if let message = make(keys, bundle), message != sent {
                try stream.send(message)
                sent = message
            }
            identities.waitForChange(after: generation, timeout: 30) { stream.isCancelled }
        }
    }

    private func fetchJWTSVID(_ r: WorkloadAPI.JWTSVIDRequest, _ entries: [WorkloadEntry]) throws -> WorkloadAPI.JWTSVIDResponse {
        guard !r.audience.isEmpty else { throw GRPCStatus(.invalidArgument, "audience must be specified") }
        // The broker's rule for audiences (1-8, each 1-256 printable ASCII without spaces), checked here
        // so that a bad one is the caller's INVALID_ARGUMENT, not the broker's refusal.
        guard r.audience.count <= 8, r.audience.allSatisfy({ (1...256).contains($0.utf8.count) && $0.utf8.allSatisfy { (0x21...0x7e).contains($0) } }) else {
            throw GRPCStatus(.invalidArgument, "audience: 1-8 values of 1-256 printable characters without spaces")
        }
        let agents = entries.map(\.agent)
        identities.ensure(agents, timeout: issueWait)
        var wanted = identities.snapshot(agents).svids
        if !r.spiffeID.isEmpty {
            wanted = wanted.filter { $0.spiffeID == r.spiffeID }
            guard !wanted.isEmpty else { throw GRPCStatus(.permissionDenied, "no identity issued for \(r.spiffeID)") }
        }
        guard !wanted.isEmpty else { throw GRPCStatus(.permissionDenied, agents.lazy.compactMap(identities.refusal).first ?? "no identity issued") }
        var svids: [WorkloadAPI.JWTSVID] = []
        for svid in wanted {
            do {
                let jwt = try identities.jwtSVID(agent: svid.agent, audience: r.audience)
                svids.append(WorkloadAPI.JWTSVID(spiffeID: jwt.spiffeID, svid: jwt.token, hint: svid.agent))
            } catch let e as VouchError where e.code == .workloadNoIdentity {
                throw GRPCStatus(.permissionDenied, e.message)
            } catch {
                throw GRPCStatus(.unavailable, "the broker did not issue a JWT-SVID")
            }
        }
        return WorkloadAPI.JWTSVIDResponse(svids: svids)
    }

    private func validate(_ r: WorkloadAPI.ValidateJWTSVIDRequest) throws -> WorkloadAPI.ValidateJWTSVIDResponse {
        guard !r.audience.isEmpty else { throw GRPCStatus(.invalidArgument, "audience must be specified") }
        guard !r.svid.isEmpty else { throw GRPCStatus(.invalidArgument, "svid must be specified") }
        if identities.jwtKeys().jwks.isEmpty { identities.refreshJWTKeys() }
        var result: (spiffeID: String, claims: [UInt8])
        do { result = try verify(r.svid, r.audience, identities.jwtKeys().jwks) } catch let first as VouchError {
            // A key the set lacks may be new: fetch the set once more, then judge again.
            guard first.code == .jwtSVIDKeyUnknown else { throw GRPCStatus(.invalidArgument, first.message) }
            identities.refreshJWTKeys()
            do { result = try verify(r.svid, r.audience, identities.jwtKeys().jwks) } catch let e as VouchError { throw GRPCStatus(.invalidArgument, e.message) }
        }
        let claims: JSONValue
        do { claims = try JSONValue(json: result.claims) } catch { throw GRPCStatus(.internalError, "the token's claims do not read as JSON") }
        return WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: result.spiffeID, claims: claims)
    }
}
