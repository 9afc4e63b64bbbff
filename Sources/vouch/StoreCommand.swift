import Foundation
import VouchCore
import VouchCrypto
import VouchModel
import VouchPostgres
import VouchStore

/// `vouch store copy --from DATA-DIR/vouch.db --to postgres://… [--dry-run]`: moves a stopped
/// broker's SQLite database into an empty PostgreSQL database, in one transaction that commits
/// only once every table read back has the source's row count and digest (docs/operations.md,
/// "Moving a broker from SQLite to PostgreSQL"). `--dry-run` reads and counts the source only.
func storeCommand(_ argv: [String]) throws -> Int32 {
    guard argv.first == "copy" else { throw VouchError(.usage, "expected: vouch store copy --from DATA-DIR/vouch.db --to postgres://…") }
    let args = try Arguments(Array(argv.dropFirst()), options: ["from", "to"], flags: ["dry-run"])
    var from = try args.required("from")
    let dryRun = args.has("dry-run")
    let to = dryRun ? args["to"] : try args.required("to")
    if let to, !(to.hasPrefix("postgres://") || to.hasPrefix("postgresql://")) {
        throw VouchError(.usage, "--to must be a postgres:// URL")
    }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: from, isDirectory: &isDirectory), isDirectory.boolValue { from += "/vouch.db" }

    let source = try SQLiteBrokerStore.Export(path: from)
    let tables: [TableTally]
    if let to, !dryRun {
        let destination = try PostgresBrokerStore(url: to, readConnections: 1)
        tables = try destination.importCopy(from: source, sha256: Crypto.sha256)
    } else {
        var tally = StoreCopyTally(sha256: Crypto.sha256)
        _ = try source.exportRows(chunkSize: StoreCopy.chunkSize) { tally.add($0, $1) }
        tables = tally.tables
    }
    let width = tables.map(\.table.count).max() ?? 0
    for t in tables { print(t.table.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(t.rows)") }
    let rows = tables.reduce(0) { $0 + $1.rows }
    print(dryRun ? "read \(rows) rows from \(from); dry run: nothing written" : "copied \(rows) rows; verified")
    return 0
}
