import Foundation
import VouchAPI
import VouchCore
import VouchHTTPClient

extension Attester {
    /// The broker calls the Workload API needs, over this attester's connections: enrollment
    /// through the attested path (`enroll`), the bundle and JWT keys over the CA-pinned TLS
    /// connection, JWT-SVIDs over mutual TLS with the host certificate (the broker issues them
    /// only to the host an agent certificate belongs to).
    public func workloadBroker() throws -> WorkloadBroker {
        guard let hostID, let identity, let certFile = identity.certificateFile, let keyFile = identity.keyFile else {
            throw VouchError(.attesterNotRegistered, "the Workload API needs a registered host with a state directory (its host certificate)")
        }
        guard case let .https(base, caFile) = (broker.transport as? HTTPClient)?.transport else {
            throw VouchError(.config, "the Workload API needs an HTTPS broker transport")
        }
        let broker = self.broker
        let mtls = APIClient(transport: HTTPClient(.https(baseURL: base, caFile: caFile), identity: .init(certificateFile: certFile, keyFile: keyFile)))
        return WorkloadBroker(
            enroll: { [self] in try self.enroll($0) },
            bundle: { String(decoding: try broker.raw("GET", "/v1/bundle").body, as: UTF8.self) },
            jwtSVID: { serial, audience in
                try mtls.call("POST", "/v1/hosts/\(hostID)/jwt-svids", body: JWTSVIDIssueRequest(serial: serial, audience: audience), as: JWTSVIDIssueResponse.self)
            },
            jwks: { try broker.raw("GET", "/v1/jwt-svid/jwks").body })
    }

    /// Opens the broker's event stream (`GET /v1/events`) for `BrokerEventWatcher`.
    public func eventStreamOpener() throws -> BrokerEventWatcher.Open {
        guard case let .https(base, caFile) = (broker.transport as? HTTPClient)?.transport else {
            throw VouchError(.config, "the Workload API needs an HTTPS broker transport")
        }
        // One stream lives long: the transfer limit only makes it reconnect (after the last id) now and then.
        let client = HTTPClient(.https(baseURL: base, caFile: caFile), timeoutSeconds: 3600)
        return { path, headers in
            let stream = try client.open("GET", path, headers: headers.merging(["Accept": "text/event-stream"]) { a, _ in a })
            guard stream.status == 200 else {
                stream.cancel()
                throw VouchError(.http, "the broker answered \(stream.status) to \(path)")
            }
            return (next: { try stream.next() }, cancel: { stream.cancel() })
        }
    }
}
