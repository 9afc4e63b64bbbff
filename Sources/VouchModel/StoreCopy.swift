import VouchCore

// `vouch store copy`: moving a broker's database from SQLite to PostgreSQL. Both stores keep the
// same tables with the same columns and store values the same way (times as seconds since 1970 in
// a floating-point column, JSON as text, bytes as BLOB / bytea, booleans as 0/1), so a copy is
// rows moved as they are: no record is decoded or re-encoded on the way. What is described here
// is pure: the tables in the order their references allow, each column's type, how a value read
// from a source is checked against it, and the per-table count and digest both sides compute so
// that the copy is verified before it commits.

/// One stored value as it crosses from one store to the other.
public enum StoredValue: Sendable, Equatable {
    case null, int(Int64), real(Double), text(String), bytes([UInt8])
}

/// What a column holds in both schemas (SQLite INTEGER / REAL / TEXT / BLOB; PostgreSQL integer
/// or bigint / double precision / text / bytea).
public enum StoredColumnType: String, Sendable, Equatable {
    case integer, real, text, bytes

    /// `value` as this column holds it: NULL stays NULL; an integer in a REAL column becomes a
    /// double, and a whole double in an INTEGER column an integer (SQLite's affinities may store
    /// either); anything else of another kind is refused, so that nothing is silently turned into
    /// something the destination would store differently.
    public func coerce(_ value: StoredValue) -> StoredValue? {
        switch (self, value) {
        case (_, .null): return .null
        case (.integer, .int), (.real, .real), (.text, .text), (.bytes, .bytes): return value
        case let (.real, .int(i)): return .real(Double(i))
        case let (.integer, .real(d)) where d == d.rounded() && abs(d) < 0x1p63: return .int(Int64(d))
        default: return nil
        }
    }
}

/// A column of a copied table.
public struct StoredColumn: Sendable, Equatable {
    public let name: String
    public let type: StoredColumnType
    public init(_ name: String, _ type: StoredColumnType) { self.name = name; self.type = type }
}

/// One table `vouch store copy` moves: its columns (the same names in both schemas), its primary
/// key (rows are read in its order on both sides: the order the digest covers, and the keyset a
/// chunk continues from) and the column a serial gives out, if any (SQLite AUTOINCREMENT,
/// PostgreSQL BIGSERIAL), whose sequence the destination must move past the copied ids.
public struct CopiedTable: Sendable, Equatable {
    public let name: String
    public let columns: [StoredColumn]
    public let primaryKey: [String]
    public let serial: String?

    public init(_ name: String, _ columns: [StoredColumn], primaryKey: [String], serial: String? = nil) {
        precondition(primaryKey.allSatisfy { key in columns.contains { $0.name == key } }, "\(name): the primary key names its columns")
        self.name = name; self.columns = columns; self.primaryKey = primaryKey; self.serial = serial
    }

    /// The column names, comma-separated, in order (for SELECT and INSERT).
    public var columnList: String { columns.map(\.name).joined(separator: ", ") }

    /// The primary key's columns by their position in `columns`.
    public var keyPositions: [Int] { primaryKey.map { key in columns.firstIndex { $0.name == key }! } }

    /// The primary key's columns with their types, in key order.
    public var keyColumns: [StoredColumn] { keyPositions.map { columns[$0] } }

    /// A row as read from a source, checked and coerced to the columns' types: one value per
    /// column, each NULL or of its column's type (see `StoredColumnType.coerce`), and no NULL in
    /// the primary key (a keyset read would stop at it and miss the rows after it).
    public func checked(_ row: [StoredValue]) throws -> [StoredValue] {
        guard row.count == columns.count else {
            throw VouchError(.database, "a row of \(name) has \(row.count) values for \(columns.count) columns", context: ["table": name])
        }
        let keys = Set(keyPositions)
        return try zip(columns, row).enumerated().map { i, pair in
            let (column, value) = pair
            let context = ["table": name, "column": column.name, "key": keyDescription(row)]
            guard let v = column.type.coerce(value) else {
                throw VouchError(.database, "\(name).\(column.name) holds a value that is not \(column.type.rawValue)", context: context)
            }
            guard v != .null || !keys.contains(i) else {
                throw VouchError(.database, "\(name).\(column.name) is NULL in a primary key", context: context)
            }
            return v
        }
    }

    /// The row's primary key as text, to name a row in messages.
    public func keyDescription(_ row: [StoredValue]) -> String {
        keyPositions.map { i -> String in
            guard i < row.count else { return "?" }
            switch row[i] {
            case .null: return "NULL"
            case let .int(x): return "\(x)"
            case let .real(x): return "\(x)"
            case let .text(s): return String(s.prefix(64))
            case let .bytes(b): return Hex.encode(Array(b.prefix(32)))
            }
        }.joined(separator: ",")
    }
}

/// The tables and their order; the count and digest of a copy.
public enum StoreCopy {
    /// Rows read, written and read back at a time.
    public static let chunkSize = 1000

    /// Every table of the broker's schema (SQLite version 7, PostgreSQL version 1), in an order
    /// where each row's references are copied before it: hosts before their trust records and
    /// certificates, decisions before the certificates and TEE evidence that name them, events
    /// before webhook deliveries. The schema versions' bookkeeping (`meta`, `vouch_meta`) is each
    /// store's own and is not copied.
    public static let tables: [CopiedTable] = {
        func c(_ name: String, _ type: StoredColumnType) -> StoredColumn { StoredColumn(name, type) }
        return [
            CopiedTable("hosts", [c("id", .text), c("hostname", .text), c("ek_public", .bytes), c("ek_certificate", .bytes), c("ek_issuer", .text),
                                  c("labels", .text), c("ak_public", .bytes), c("ak_name", .bytes), c("ak_algorithm", .text), c("ak_state", .text),
                                  c("activation_digest", .bytes), c("activation_expires_at", .real), c("activation_failures", .integer),
                                  c("registered_at", .real), c("updated_at", .real), c("blocked_reason", .text), c("deleted_at", .real),
                                  c("version", .integer), c("platform", .text)], primaryKey: ["id"]),
            CopiedTable("host_trust", [c("host_id", .text), c("state", .text), c("since", .real), c("mode", .text), c("attester_url", .text),
                                       c("host_cert_serial", .text), c("host_key_pin", .text), c("simulated", .integer), c("last_verdict_at", .real),
                                       c("last_contact_at", .real), c("failures", .integer), c("faults", .integer), c("unreachable_since", .real),
                                       c("last_problem", .text)], primaryKey: ["host_id"]),
            CopiedTable("attestations", [c("id", .integer), c("host_id", .text), c("at", .real), c("kind", .text), c("trusted", .integer),
                                         c("codes", .text), c("message", .text), c("agent_name", .text), c("nonce", .text), c("policy_name", .text),
                                         c("policy_version", .integer), c("policy_sha256", .text), c("pcr_digest", .text), c("serial", .text),
                                         c("claims", .text), c("pcrs", .text)], primaryKey: ["id"], serial: "id"),
            CopiedTable("certificates", [c("serial", .text), c("host_id", .text), c("agent_name", .text), c("spiffe_id", .text), c("not_before", .real),
                                         c("not_after", .real), c("pem", .text), c("attestation_id", .integer), c("revoked_at", .real),
                                         c("revocation_reason", .integer), c("issuer", .text)], primaryKey: ["serial"]),
            CopiedTable("crls", [c("issuer", .text), c("number", .integer), c("der", .bytes), c("this_update", .real), c("next_update", .real)],
                        primaryKey: ["issuer"]),
            CopiedTable("events", [c("id", .integer), c("at", .real), c("type", .text), c("data", .text)], primaryKey: ["id"], serial: "id"),
            CopiedTable("subscribers", [c("url", .text), c("since_event", .integer)], primaryKey: ["url"]),
            CopiedTable("deliveries", [c("subscriber", .text), c("event_id", .integer), c("attempts", .integer), c("delivered_at", .real),
                                       c("next_attempt_at", .real), c("last_error", .text)], primaryKey: ["subscriber", "event_id"]),
            CopiedTable("tokens", [c("id", .text), c("name", .text), c("scope", .text), c("digest", .bytes), c("created_at", .real), c("revoked_at", .real)],
                        primaryKey: ["id"]),
            CopiedTable("used_nonces", [c("nonce", .text), c("host_id", .text), c("expires_at", .real)], primaryKey: ["nonce"]),
            CopiedTable("tee_evidence", [c("host_id", .text), c("attestation_id", .integer), c("evidence", .text)], primaryKey: ["host_id"]),
            CopiedTable("log_outbox", [c("id", .integer), c("entry", .bytes), c("certificate", .text)], primaryKey: ["id"], serial: "id"),
            CopiedTable("log_entries", [c("idx", .integer), c("entry", .bytes), c("certificate", .text), c("outbox_id", .integer)], primaryKey: ["idx"]),
            CopiedTable("log_hashes", [c("level", .integer), c("idx", .integer), c("hash", .bytes)], primaryKey: ["level", "idx"]),
            CopiedTable("log_checkpoints", [c("size", .integer), c("root", .bytes), c("note", .text), c("cosignatures", .text), c("published_at", .real)],
                        primaryKey: ["size"]),
        ]
    }()

    /// The canonical bytes of a row, which the digest covers: per value a tag (0 NULL, 1 integer,
    /// 2 double, 3 text, 4 bytes) then an integer's 8 bytes big-endian, a double's IEEE 754 bits
    /// big-endian, or a text's UTF-8 or the bytes after their length (8 bytes big-endian). Every
    /// value is self-delimiting, so two different rows never encode alike.
    public static func encode(_ row: [StoredValue]) -> [UInt8] {
        var out: [UInt8] = []
        func u64(_ x: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: x >> UInt64(shift))) } }
        for value in row {
            switch value {
            case .null: out.append(0)
            case let .int(x): out.append(1); u64(UInt64(bitPattern: x))
            case let .real(x): out.append(2); u64(x.bitPattern)
            case let .text(s): out.append(3); u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8)
            case let .bytes(b): out.append(4); u64(UInt64(b.count)); out.append(contentsOf: b)
            }
        }
        return out
    }
}

/// One table's side of a copy: how many rows, and the digest of all of them in primary-key order
/// (SHA-256 chained row by row: `digest = SHA-256(digest || encode(row))` from empty, so it does
/// not depend on how the rows were split into chunks). The source's and the destination's must be
/// equal.
public struct TableTally: Sendable, Equatable {
    public let table: String
    public var rows: Int
    public var digest: [UInt8]
    public init(table: String, rows: Int = 0, digest: [UInt8] = []) { self.table = table; self.rows = rows; self.digest = digest }
}

/// Counts and digests rows table by table, for every table of `StoreCopy.tables` (those without
/// rows stay at zero). SHA-256 is injected (VouchCrypto's), this module being pure.
public struct StoreCopyTally: Sendable {
    public private(set) var tables: [TableTally] = StoreCopy.tables.map { TableTally(table: $0.name) }
    private let sha256: @Sendable ([UInt8]) -> [UInt8]

    public init(sha256: @escaping @Sendable ([UInt8]) -> [UInt8]) { self.sha256 = sha256 }

    /// Adds `rows`, the next rows of `table` in primary-key order.
    public mutating func add(_ table: CopiedTable, _ rows: [[StoredValue]]) {
        guard let i = tables.firstIndex(where: { $0.table == table.name }) else {
            preconditionFailure("\(table.name) is not a copied table")
        }
        for row in rows { tables[i].digest = sha256(tables[i].digest + StoreCopy.encode(row)) }
        tables[i].rows += rows.count
    }

    /// Rows in every table together.
    public var rows: Int { tables.reduce(0) { $0 + $1.rows } }

    /// Refuses unless `other` (the same tables counted on the other side) has the same rows: the
    /// first table that differs is named, by its count or, when the counts agree, its digest.
    public func verify(against other: StoreCopyTally) throws {
        for (mine, theirs) in zip(tables, other.tables) {
            guard mine.rows == theirs.rows else {
                throw VouchError(.database, "\(mine.table): \(theirs.rows) rows read back for \(mine.rows) copied",
                                 context: ["table": mine.table, "check": "rows", "expected": "\(mine.rows)", "got": "\(theirs.rows)"])
            }
            guard mine.digest == theirs.digest else {
                throw VouchError(.database, "\(mine.table): the rows read back differ from the rows copied",
                                 context: ["table": mine.table, "check": "digest", "expected": Hex.encode(mine.digest), "got": Hex.encode(theirs.digest)])
            }
        }
    }
}

/// A store whose rows `vouch store copy` can read (the SQLite store's read-only export).
public protocol StoreCopySource: Sendable {
    /// Reads every table of `StoreCopy.tables`, in that order, as one snapshot (one read
    /// transaction): each table's rows in primary-key order, checked against its columns
    /// (`CopiedTable.checked`), handed to `chunk` at most `chunkSize` at a time (a table without
    /// rows is not handed over). Returns, for each table with a serial, the highest id the serial
    /// ever gave out (rows since deleted included, as the log outbox's are once sequenced), so that
    /// the destination never gives one out again.
    func exportRows(chunkSize: Int, _ chunk: (CopiedTable, [[StoredValue]]) throws -> Void) throws -> [String: Int64]
}
