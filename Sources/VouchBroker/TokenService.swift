import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel

/// API tokens: created (the secret shown once, only its SHA-256 kept), listed, revoked, and the
/// scope a presented token grants (`BrokerAPI.require`).
public struct TokenService: BrokerPart, Sendable {
    let context: BrokerContext

    // MARK: Tokens

    /// Creates a named token; the secret is returned once and only its SHA-256 is kept.
    public func createToken(_ req: TokenCreateRequest) throws -> TokenInfo {
        guard req.name.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
            throw VouchError(.badRequest, "token name must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'", context: ["field": "name"])
        }
        guard let scope = TokenScope(rawValue: req.scope) else {
            throw VouchError(.badRequest, "scope must be read or admin", context: ["field": "scope", "got": String(req.scope.prefix(32))])
        }
        let id = Hex.encode(try Crypto.randomBytes(8))
        let token = "vouch_\(scope.rawValue)_" + Hex.encode(try Crypto.randomBytes(32))
        let now = clock.now()
        try store.saveToken(TokenRecord(id: id, name: req.name, scope: scope, digest: Crypto.sha256(Array(token.utf8)), createdAt: now))
        log("API token \(id) (\(req.name), \(scope.rawValue)) created")
        return TokenInfo(id: id, name: req.name, scope: scope.rawValue, createdAt: now.iso8601, token: token)
    }

    public func listTokens() throws -> [TokenInfo] {
        try store.tokens().map { TokenInfo(id: $0.id, name: $0.name, scope: $0.scope.rawValue, createdAt: $0.createdAt.iso8601, revokedAt: $0.revokedAt?.iso8601) }
    }

    public func revokeToken(id: String) throws -> TokenInfo {
        guard Hex.isLowercase(id, length: 16...16) else {
            throw VouchError(.badRequest, "token id must be 16 hex digits", context: ["field": "id"])
        }
        guard try store.revokeToken(id: id, at: clock.now()), let t = try store.tokens().first(where: { $0.id == id }) else {
            throw VouchError(.notFound, "no unrevoked token with this id", context: ["id": id])
        }
        log("API token \(id) revoked")
        return TokenInfo(id: t.id, name: t.name, scope: t.scope.rawValue, createdAt: t.createdAt.iso8601, revokedAt: t.revokedAt?.iso8601)
    }

    /// The scope a presented bearer token grants (nil: not a valid token).
    public func scope(ofTokenDigest digest: [UInt8]) throws -> TokenScope? {
        guard let t = try store.token(digest: digest), t.revokedAt == nil else { return nil }
        return t.scope
    }
}
