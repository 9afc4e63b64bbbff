import Foundation
import VouchAPI
import VouchCore
import VouchModel
import VouchTLog

/// The transparency log over HTTP (docs/api.md): the C2SP tlog-tiles paths (`/checkpoint`,
/// `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`), proofs (`/v1/log/proof`,
/// `/v1/log/consistency`), witness cosignatures (`POST /v1/log/cosignatures`) and the trust
/// document (`/v1/trust`). All public, no token: the log is meant to be read by anyone.
public struct LogAPI: Sendable {
    let log: TransparencyLog
    let trustDomain: String
    /// PEM of the broker CA (certifies the EAR signer).
    let brokerCAPEM: String

    public init(log: TransparencyLog, trustDomain: String, brokerCAPEM: String) {
        self.log = log
        self.trustDomain = trustDomain
        self.brokerCAPEM = brokerCAPEM
    }

    /// Full tiles and bundles never change; the checkpoint and partial tiles do.
    static let immutable = "public, max-age=31536000, immutable"
    static let changing = "no-cache"

    /// Whether `path` is one of the static tlog-tiles paths.
    static func isStaticPath(_ path: String) -> Bool { path == "/checkpoint" || path.hasPrefix("/tile/") }

    /// `/checkpoint` and `/tile/...` (GET and HEAD).
    func staticRoute(_ req: HTTPRequest) throws -> HTTPResponse {
        guard req.method == "GET" || req.method == "HEAD" else { throw BrokerAPI.methodNotAllowed(req.method, allow: ["GET", "HEAD"]) }
        if req.path == "/checkpoint" {
            guard let c = try log.served() else { throw VouchError(.notFound, "the log has no checkpoint yet") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", Self.changing)],
                                body: Array(c.servedNote.utf8))
        }
        let path = String(req.path.dropFirst())
        let bytes: [UInt8]?, tile: Tile
        if path.hasPrefix("tile/entries/") {
            guard let t = try? Tile(entriesPath: path) else { throw Self.noTile(path) }
            (tile, bytes) = (t, try log.entryBundle(t))
        } else {
            guard let t = try? Tile(path: path) else { throw Self.noTile(path) }
            (tile, bytes) = (t, try log.tile(t))
        }
        guard let bytes else { throw Self.noTile(path) }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream"),
                                                   ("Cache-Control", tile.isPartial ? Self.changing : Self.immutable)], body: bytes)
    }

    static func noTile(_ path: String) -> VouchError {
        VouchError(.notFound, "no such tile in the log's last checkpoint", context: ["path": String(path.prefix(128))])
    }

    /// The routes under `/v1` this API answers (nil: not one of them).
    func route(_ req: HTTPRequest, _ rest: [String], agentRoots: () throws -> String) throws -> HTTPResponse? {
        switch (req.method, rest) {
        case ("GET", ["trust"]):
            return BrokerAPI.jsonResponse(200, try trustDocument(agentRoots: try agentRoots()))
        case ("GET", ["log", "proof"]):
            return BrokerAPI.jsonResponse(200, try proof(req.query))
        case ("GET", ["log", "consistency"]):
            try Self.onlyParameters(req.query, ["old", "new"])
            let proof = try log.consistency(old: try Self.number(req.query, "old"), new: try Self.number(req.query, "new"))
            return BrokerAPI.jsonResponse(200, LogConsistencyResponse(proof: proof.map { Base64.encode($0) }))
        case ("POST", ["log", "cosignatures"]):
            guard let note = String(bytes: req.body, encoding: .utf8) else { throw VouchError(.noteUnverified, "the body is not a UTF-8 note") }
            let c = try log.addCosignatures(note: note)
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(c.servedNote.utf8))
        default:
            return nil
        }
    }

    /// The trust document (docs/receipts.md).
    public func trustDocument(agentRoots: String) throws -> TrustDocument {
        TrustDocument(trustDomain: trustDomain, agentRoots: agentRoots, brokerCA: brokerCAPEM,
                      log: .init(origin: log.origin, vkey: log.verifierKey.vkey))
    }

    /// `?index=N` or `?certificate=HEX` (exactly one).
    func proof(_ query: [String: String]) throws -> LogProofResponse {
        try Self.onlyParameters(query, ["index", "certificate"])
        switch (query["index"], query["certificate"]) {
        case (_?, nil):
            let index = try Self.number(query, "index")
            let (entry, proof) = try log.inclusion(index: index)
            return LogProofResponse(index: "\(index)", entry: Base64.encode(entry), proof: proof.text)
        case (nil, let hex?):
            guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw VouchError(.notFound, "no issuance of this certificate is in the log", context: ["field": "certificate"])
            }
            let (index, entry, proof) = try log.inclusion(certificate: hex)
            return LogProofResponse(index: "\(index)", entry: Base64.encode(entry), proof: proof.text)
        default:
            throw VouchError(.notFound, "name one entry: give exactly one of index and certificate", context: ["field": "index"])
        }
    }

    static func onlyParameters(_ query: [String: String], _ known: Set<String>) throws {
        if let unknown = query.keys.first(where: { !known.contains($0) }) {
            throw VouchError(.badRequest, "unknown query parameter", context: ["field": String(unknown.prefix(64))])
        }
    }

    /// A required decimal tree size or index.
    static func number(_ query: [String: String], _ name: String) throws -> UInt64 {
        guard let v = query[name] else { throw VouchError(.logRangeInvalid, "\(name) is required", context: ["field": name]) }
        guard v.utf8.count <= 15, v.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let n = UInt64(v) else {
            throw VouchError(.logRangeInvalid, "\(name) must be a decimal number", context: ["field": name])
        }
        return n
    }
}
