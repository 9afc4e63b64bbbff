import Foundation
import VouchCore
import VouchModel

// API tokens (only their digests are stored).

extension SQLiteBrokerStore {
    public func saveToken(_ t: TokenRecord) throws {
        try write { db in
            try db.prepare("INSERT INTO tokens (id, name, scope, digest, created_at, revoked_at) VALUES (?,?,?,?,?,?)")
                .run([.text(t.id), .text(t.name), .text(t.scope.rawValue), .blob(t.digest), .real(t.createdAt.timeIntervalSince1970),
                      t.revokedAt.map { .real($0.timeIntervalSince1970) } ?? .null])
        }
    }

    public func token(digest: [UInt8]) throws -> TokenRecord? {
        try with { db in
            try db.prepare("SELECT id, name, scope, digest, created_at, revoked_at FROM tokens WHERE digest = ?").query([.blob(digest)], StoredRecords.token).first
        }
    }

    public func tokens() throws -> [TokenRecord] {
        try with { db in try db.prepare("SELECT id, name, scope, digest, created_at, revoked_at FROM tokens ORDER BY created_at, id").query([], StoredRecords.token) }
    }

    public func revokeToken(id: String, at: Date) throws -> Bool {
        try write { db in
            try db.prepare("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL").run([.real(at.timeIntervalSince1970), .text(id)])
            return db.changes > 0
        }
    }
}
