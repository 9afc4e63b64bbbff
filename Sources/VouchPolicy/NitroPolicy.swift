import Foundation
import VouchCore

/// What a policy requires of an AWS Nitro enclave (the `nitro:` section of a policy file). The
/// defaults refuse a debug enclave (PCR0, 1, 2 and 8 all zero) and a document older than five
/// minutes. Pure values; `NitroVerifier` applies them.
///
///     nitro:
///       allowDebug: false
///       maxAge: 300            # seconds between the document's timestamp and the check time
///       pcrs:
///         0: [{name: app-v1.2, value: <96 hex>}]
///         8: [{name: signing-cert, value: <96 hex>}]
public struct NitroPolicy: Sendable, Equatable {
    /// PCR indices any of whose all-zero (or absent) value marks a debug enclave: the image,
    /// kernel and application hashes, never zero in production (PCR8 is zero for unsigned images).
    public static let debugPCRs = [0, 1, 2]

    /// True when `pcrs` (index → value) mark a debug enclave: any of `debugPCRs` all zero or
    /// absent (fail closed).
    public static func isDebug(pcrs: [Int: [UInt8]]) -> Bool {
        debugPCRs.contains { pcrs[$0]?.allSatisfy { $0 == 0 } ?? true }
    }
    /// The indices a policy may pin (image, kernel, application, IAM role, instance, signing
    /// certificate).
    public static let pinnablePCRs: Set<Int> = [0, 1, 2, 3, 4, 8]

    /// Accept a debug enclave (PCR0/1/2/8 all zero).
    public var allowDebug = false
    /// The oldest a document may be at the check time, in seconds; a timestamp in the future is
    /// allowed only within `clockSkew`.
    public var maxAge: TimeInterval = 300
    /// How far a document's timestamp may lie after the check time (clocks differ).
    public var clockSkew: TimeInterval = 60
    /// Allowed values per PCR index, by name. A pinned PCR absent from the document fails.
    public var pcrs: [Int: [TDXPolicy.NamedValue]] = [:]

    public init() {}

    /// Decodes the `nitro:` section; unknown keys, wrong types and bad values are refused with
    /// `policy_invalid` naming file:line:column and the path.
    public static func decode(_ node: ConfigNode, path: String = "nitro") throws -> NitroPolicy {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(["allowDebug", "maxAge", "pcrs"])
        var p = NitroPolicy()
        if let n = m.optional("allowDebug") { p.allowDebug = try PolicyDecoder.bool(n, m.child("allowDebug")) }
        if let n = m.optional("maxAge") { p.maxAge = TimeInterval(try PolicyDecoder.integer(n, m.child("maxAge"), 1...86_400)) }
        if let n = m.optional("pcrs") {
            let r = try PolicyDecoder.Mapping(n, path: m.child("pcrs"))
            for (k, v) in r.entries {
                guard let s = k.scalar, let index = Int(s), pinnablePCRs.contains(index) else {
                    throw PolicyDecoder.invalid(k, r.path, "keys must be PCR indices 0, 1, 2, 3, 4 or 8")
                }
                let list = try PolicyDecoder.sequence(v, path: r.child(s))
                guard !list.isEmpty else { throw PolicyDecoder.invalid(v, r.child(s), "must list at least one value") }
                p.pcrs[index] = try list.enumerated().map { i, entry in
                    let e = try PolicyDecoder.Mapping(entry, path: "\(r.child(s))[\(i)]")
                    try e.allowOnly(["name", "value"])
                    let name = try e.requiredString("name")
                    guard name.value.utf8.count <= 128 else { throw PolicyDecoder.invalid(name.node, e.child("name"), "must be at most 128 bytes") }
                    return TDXPolicy.NamedValue(name: name.value, value: try TDXPolicy.hex(try e.required("value"), e.child("value"), bytes: 48))
                }
            }
        }
        return p
    }
}
