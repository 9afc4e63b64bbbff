import Foundation
import VouchAPI
import VouchAttestation
import VouchCore

/// `vouch evidence verify --kind nvidia-rim [--component driver|vbios] --at RFC3339 [--json] FILE`:
/// verifies one NVIDIA RIM offline (with `--component`, it must be that component's RIM) with `NvidiaRIMVerifier` (chain to the compiled-in CoRIM
/// signing root at `--at`, then XML-DSig, then the SWID payload) and prints its identity and
/// reference values. Exit 0 verified, 1 refused (its code), 2 unreadable input or usage.
func rimCommand(_ args: Arguments) throws -> Int32 {
    let component = try args["component"].map { name in
        guard let c = NvidiaRIMComponent(rawValue: name) else { throw VouchError(.usage, "--component must be driver or vbios") }
        return c
    }
    guard args["nonce"] == nil, args["policy"] == nil, args["roots"] == nil, !args.has("test-roots"), args["rims"] == nil, args["rim-roots"] == nil else {
        throw VouchError(.usage, "--kind nvidia-rim takes no --nonce, --policy, --roots, --rims or --rim-roots")
    }
    let (atText, at) = try EvidenceCLIKind.at(args)
    guard args.positional.count == 1 else { throw VouchError(.usage, "give exactly one RIM FILE") }
    let bytes: [UInt8]
    do { bytes = try readEvidenceFile(args.positional[0]) } catch let e as VouchError {
        CLI.error("vouch evidence: \(CLI.oneLine(e.message))")
        return 2
    }
    let outcome = Result { try NvidiaRIMVerifier().verify(bytes, component: component, at: at) }
    if args.has("json") {
        print(JSONCodec.pretty(RIMReport(outcome)))
    } else {
        switch outcome {
        case let .success(rim):
            print("nvidia-rim: verified at \(atText)")
            print("component  \(rim.identity.component.rawValue)  version \(rim.identity.version)  product \(rim.identity.product)")
            print("signer     \(rim.identity.signer)")
            for m in rim.referenceValues.active {
                print("index \(m.index)  " + m.alternatives.map { Hex.encode($0) }.joined(separator: " | "))
            }
        case let .failure(error):
            let e = error as? VouchError
            print("nvidia-rim: refused at \(atText)")
            print("violation  \(e?.code.rawValue ?? "error"): \(CLI.oneLine(e?.message ?? "\(error)"))")
        }
    }
    if case .success = outcome { return 0 }
    return 1
}

/// `--json`: `verified`, `kind`, `violations` [{code, message}], and `claims` (the RIM's identity
/// and every measurement: index, active, alternatives as hex), null when refused.
private struct RIMReport: Encodable {
    struct Violation: Encodable { let code, message: String }
    struct Measurement: Encodable { let index: Int; let active: Bool; let alternatives: [String] }
    struct Claims: Encodable {
        let component, version, product, tagId, signer: String
        let measurements: [Measurement]
    }
    let verified: Bool
    let kind = "nvidia-rim"
    let violations: [Violation]
    let claims: Claims?

    init(_ outcome: Result<VerifiedNvidiaRIM, any Error>) {
        switch outcome {
        case let .success(rim):
            let id = rim.identity
            (verified, violations) = (true, [])
            claims = Claims(component: id.component.rawValue, version: id.version, product: id.product, tagId: id.tagId, signer: id.signer,
                            measurements: rim.referenceValues.measurements.values.sorted { $0.index < $1.index }
                                .map { Measurement(index: $0.index, active: $0.active, alternatives: $0.alternatives.map { Hex.encode($0) }) })
        case let .failure(error):
            let e = error as? VouchError
            (verified, claims) = (false, nil)
            violations = [Violation(code: e?.code.rawValue ?? "error", message: e?.message ?? "\(error)")]
        }
    }
}
