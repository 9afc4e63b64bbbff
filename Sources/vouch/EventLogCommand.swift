import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchTPMWire

/// `vouch eventlog replay FILE [--json]` and `vouch eventlog show FILE [--json]`.
func eventlogCommand(_ argv: [String]) throws -> Int32 {
    guard let sub = argv.first, ["replay", "show"].contains(sub) else {
        throw VouchError(.usage, "give a subcommand: replay FILE or show FILE")
    }
    let args = try Arguments(Array(argv.dropFirst()), options: [], flags: ["json"], positional: 1)
    guard let path = args.positional.first else { throw VouchError(.usage, "eventlog \(sub) needs a FILE") }
    guard let data = FileManager.default.contents(atPath: path) else {
        CLI.error("eventlog: cannot read \(path)")
        return 2
    }
    let log: TCGEventLog
    do { log = try TCGEventLog(bytes: [UInt8](data)) } catch let e as VouchError {
        CLI.error("eventlog: \(path) is not a TCG event log: \(e)")
        return 1
    }
    let replayed = log.replay(using: OpenSSLDigester())
    if sub == "replay" {
        let out = PCRValues(replayed).hexMap
        if args.has("json") {
            print(JSONCodec.pretty(out))
        } else {
            print("\(log.format.rawValue) log, \(log.events.count) events" + (log.startupLocality.map { ", startup locality \($0)" } ?? ""))
            for bank in replayed.keys.sorted(by: { $0.digestSize < $1.digestSize }) {
                print("\(bank.rawValue):")
                for (pcr, v) in replayed[bank]!.sorted(by: { $0.key < $1.key }) { print("  \(String(format: "%2d", pcr)): \(Hex.encode(v))") }
            }
        }
        return 0
    }
    // Offline there is no quote: the log is verified against its own replay, so the claims hold for
    // a quote with exactly these PCR values; each event's data is still checked against its digest.
    let claims: BootClaims?
    var problems: [String] = []
    switch log.verify(quotedPCRs: replayed, using: OpenSSLDigester()) {
    case let .verified(v): claims = v.claims
    case let .rejected(violations):
        claims = nil
        problems = violations.map { "\($0.code.rawValue) \($0.path): expected \($0.expected), got \($0.actual)" }
    }
    if args.has("json") {
        struct Shown: Encodable { let format: String; let events: [[String: String]]; let claims: BootClaims?; let problems: [String] }
        let bank = log.banks.last
        let events = log.events.map { e -> [String: String] in
            ["sequence": "\(e.sequence)", "pcr": "\(e.pcr)", "type": e.typeName, "digest": bank.flatMap { e.digests[$0] }.map { Hex.encode($0) } ?? "",
             "summary": e.summary]
        }
        print(JSONCodec.pretty(Shown(format: log.format.rawValue, events: events, claims: claims, problems: problems)))
        return claims == nil ? 1 : 0
    }
    let bank = log.banks.last
    print("\(log.format.rawValue) log, \(log.events.count) events, banks \(log.banks.map(\.rawValue).joined(separator: ","))")
    for e in log.events {
        let d = bank.flatMap { e.digests[$0] }.map { String(Hex.encode($0).prefix(16)) + "…" } ?? ""
        print(String(format: "%4d  PCR%-2d  %-34@ %-18@ ", e.sequence, e.pcr, e.typeName as NSString, d as NSString) + e.summary)
    }
    guard let claims else {
        print("\nno claims: the event data does not match the digests")
        for p in problems { print("  \(p)") }
        return 1
    }
    print("\nclaims (true only for a quote of this log's replayed PCRs; image paths are unverified):")
    print("  Secure Boot: \(claims.secureBoot.map { $0 ? "enabled" : "disabled" } ?? "not measured")")
    for (k, v) in claims.variables.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
    for a in claims.bootApplications { print("  boot application (PCR\(a.pcr)): \(a.path ?? "?") \(a.digest)") }
    for k in claims.kernelCommandLines { print("  kernel command line: \(k)") }
    if let unchecked = claims.uncheckedCommandEvents { print("  PCR 8 events whose data cannot be checked: \(unchecked)") }
    if !claims.separatorErrors.isEmpty { print("  separator errors in PCRs \(claims.separatorErrors)") }
    return 0
}
