import Foundation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchGRPC
import VouchRuntime
import VouchSPIFFE
import VouchYAML

/// `--workload-socket PATH --workload-entries FILE`: the SPIFFE Workload API (docs/agents.md),
/// wired from its parts: the entries file, the identities over the attester's broker calls, the
/// broker's event stream, and the gRPC server.
struct WorkloadAPIServer {
    let server: GRPCServer
    let identities: WorkloadIdentities
    let watcher: BrokerEventWatcher

    /// `perUser`: connections one uid may hold (`--workload-connections-per-user`).
    static func start(attester: Attester, socket: String, entriesFile: String, perUser: Int) throws -> WorkloadAPIServer {
        guard attester.config.tee == nil else { throw VouchError(.unsupported, "the Workload API is served on TPM hosts (a confidential VM's is not wired yet)") }
        let entries = try WorkloadEntries(document: try YAMLParser.parse(try Files.read(entriesFile), file: entriesFile))
        guard let hostID = attester.hostID, let identity = attester.identity else { throw VouchError(.attesterNotRegistered, "the host is not registered") }
        let trustDomain = try SPIFFEID.parse(identity.brokerSpiffeID).trustDomain
        let identities = WorkloadIdentities(entries: entries, broker: try attester.workloadBroker(), log: { Runtime.log($0) })
        // The watcher first: an event between the first issuance and the stream would be missed.
        let watcher = BrokerEventWatcher(hostID: hostID, identities: identities, open: try attester.eventStreamOpener(), log: { Runtime.log($0) })
        watcher.start()
        let deadline = Date().addingTimeInterval(5)
        while !watcher.connected.withLock({ $0 }) && Date() < deadline { usleep(20_000) }
        identities.start()
        let service = WorkloadAPIService(identities: identities, trustDomain: trustDomain) { token, audience, jwks in
            try JWTSVIDVerifier.verify(token: token, audience: audience, keys: try JWTSVIDVerifier.keys(jwks: jwks), trustDomain: trustDomain, now: Date())
        }
        var limits = GRPCServer.Limits()
        limits.maxConnectionsPerUID = perUser
        let server = try GRPCServer(unixSocket: socket, mode: 0o666, limits: limits, handler: { try service.handle($0, $1) })
        Runtime.log("workload API on \(socket): \(entries.entries.count) registration entries, trust domain \(trustDomain)")
        return WorkloadAPIServer(server: server, identities: identities, watcher: watcher)
    }

    func stop() {
        server.stop()
        watcher.stop()
        identities.stop()
    }
}
