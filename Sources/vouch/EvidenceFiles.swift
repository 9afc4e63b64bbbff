import Foundation
import VouchCore
import VouchCrypto

/// The FILEs of `vouch evidence verify`, each told apart by its content (names only for the PCS
/// collateral files, whose content is alike): an SEV-SNP report (1184 bytes whose version is
/// 2-5, or its hex text), an Azure HCL report ("HCLA"), a certificate (DER or PEM: the VCEK or
/// VLEK), a CRL (DER or PEM), a TDX quote (version 4/5, TEE type 0x81), dcap-qvl collateral JSON
/// (`tcb_info`), the Intel PCS collateral files by their names (tcbinfo_response.json,
/// qeidentity_response.json, *_issuer_chain.pem, pck_crl*.der, root_ca_crl.der), a CCEL event log
/// (a TCG crypto-agile log), the CCEL ACPI table (read for nothing), an AWS Nitro attestation
/// document (a CBOR COSE_Sign1, tagged or not, or its base64 text), an NVIDIA GPU's SPDM
/// transcript (hex or binary, opening 0x11 0xE0) and a GPU evidence bundle (a JSON array).
/// Anything else is a usage error naming the file.
struct EvidenceFiles {
    enum Kind: String {
        case snpReport, azureHCLReport, certificate, crl, tdxQuote, tdxCollateralJSON, pcsFile, eventLog, acpiTable, nitroDocument
        case spdmTranscript, gpuEvidenceBundle
    }

    private(set) var items: [(kind: Kind, path: String, bytes: [UInt8])] = []

    static let pcsNames: Set<String> = ["tcbinfo_response.json", "qeidentity_response.json", "tcb_info_issuer_chain.pem", "qe_identity_issuer_chain.pem",
                                        "pck_crl_issuer_chain.pem", "pck_crl_platform.der", "pck_crl_processor.der", "pck_crl.der", "root_ca_crl.der"]

    init(paths: [String]) throws {
        for path in paths {
            let bytes = try readEvidenceFile(path)
            guard let kind = Self.kind(of: bytes, name: URL(fileURLWithPath: path).lastPathComponent) else {
                throw VouchError(.usage, "cannot tell what \(path) is (an SEV-SNP or HCL report, a certificate, a CRL, a TDX quote, collateral, a CCEL log, a Nitro document, a GPU's SPDM transcript or evidence bundle)")
            }
            let content = kind == .snpReport ? Self.snpReportBytes(bytes) : kind == .nitroDocument ? Self.nitroBytes(bytes) ?? bytes
                : kind == .spdmTranscript ? Self.spdmTranscriptBytes(bytes) ?? bytes : bytes
            items.append((kind, path, content))
        }
    }

    /// Evidence whose parts are already told apart (the broker's `tee` fields), each named for
    /// messages.
    init(known: [(kind: Kind, path: String, bytes: [UInt8])]) { items = known }

    static func kind(of b: [UInt8], name: String) -> Kind? {
        if pcsNames.contains(name) { return .pcsFile }
        if nitroBytes(b) != nil { return .nitroDocument }
        if spdmTranscriptBytes(b) != nil { return .spdmTranscript }
        if b.first == UInt8(ascii: "["), (try? JSONSerialization.jsonObject(with: Data(b))) is [Any] { return .gpuEvidenceBundle }
        if b.starts(with: Array("HCLA".utf8)) { return .azureHCLReport }
        if b.starts(with: Array("CCEL".utf8)) { return .acpiTable }
        if b.count == 1184, let v = b.first, (2...5).contains(v), b[1] == 0, b[2] == 0, b[3] == 0 { return .snpReport }
        if snpReportBytes(b).count == 1184, b.count != 1184 { return .snpReport }
        if b.count >= 48, (4...5).contains(b[0]), b[1] == 0, b[4] == 0x81, b[5] == 0, b[6] == 0, b[7] == 0 { return .tdxQuote }
        // A TCG crypto-agile log opens with an EV_NO_ACTION event holding "Spec ID Event03" (a CCEL
        // log's first event names MR index 1 or 0).
        if b.count >= 8, b[0] <= 4, b[1..<4].allSatisfy({ $0 == 0 }), Array(b[4..<8]) == [3, 0, 0, 0],
           b.prefix(128).windows(Array("Spec ID Event03".utf8)) { return .eventLog }
        let text = String(decoding: b.prefix(64), as: UTF8.self)
        if text.hasPrefix("-----BEGIN CERTIFICATE-----") { return .certificate }
        if text.hasPrefix("-----BEGIN X509 CRL-----") { return .crl }
        if b.first == UInt8(ascii: "{"), (try? JSONSerialization.jsonObject(with: Data(b)) as? [String: Any])?["tcb_info"] != nil { return .tdxCollateralJSON }
        if b.first == 0x30 {
            if (try? Certificate(der: b)) != nil { return .certificate }
            if (try? CRL(der: b)) != nil { return .crl }
        }
        return nil
    }

    /// A report given as hex text (as some tools print it) decoded; other bytes as they are.
    static func snpReportBytes(_ b: [UInt8]) -> [UInt8] {
        guard b.count >= 2368, b.count <= 2400 else { return b }
        let text = String(decoding: b, as: UTF8.self).filter { !$0.isWhitespace }
        guard let bytes = try? Hex.decode(text.lowercased(), field: "report"), bytes.count == 1184 else { return b }
        return bytes
    }

    /// A COSE_Sign1 array head (0x84, after tag 18's 0xd2 when tagged) as the bytes are, or
    /// after decoding them as base64 text; nil otherwise.
    static func nitroBytes(_ b: [UInt8]) -> [UInt8]? {
        func cose(_ b: [UInt8]) -> Bool { b.first == 0x84 || b.starts(with: [0xd2, 0x84]) }
        if cose(b) { return b }
        guard b.count >= 8, b.count <= 96 << 10, b.allSatisfy({ $0 < 0x80 }) else { return nil }
        let text = String(decoding: b, as: UTF8.self).filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: text) else { return nil }
        let decoded = [UInt8](data)
        return cose(decoded) ? decoded : nil
    }

    func all(_ kind: Kind) -> [(path: String, bytes: [UInt8])] { items.filter { $0.kind == kind }.map { ($0.path, $0.bytes) } }

    /// Exactly one file of `kind`; none or several is a usage error.
    func one(_ kind: Kind, _ what: String) throws -> [UInt8] {
        let found = all(kind)
        guard found.count == 1 else {
            throw VouchError(.usage, found.isEmpty ? "give \(what)" : "give one \(what), not \(found.count) (\(found.map(\.path).joined(separator: ", ")))")
        }
        return found[0].bytes
    }

    /// At most one file of `kind`; several is a usage error (which one was meant?).
    func atMostOne(_ kind: Kind, _ what: String) throws -> [UInt8]? {
        let found = all(kind)
        guard found.count <= 1 else { throw VouchError(.usage, "give at most one \(what), not \(found.count) (\(found.map(\.path).joined(separator: ", ")))") }
        return found.first?.bytes
    }

    /// The first file of `kind`, if any.
    func optional(_ kind: Kind) -> [UInt8]? { all(kind).first?.bytes }
}

extension Collection where Element == UInt8 {
    /// True if `needle` occurs in this collection.
    func windows(_ needle: [UInt8]) -> Bool {
        let hay = Array(self)
        guard needle.count <= hay.count else { return false }
        return (0...(hay.count - needle.count)).contains { Array(hay[$0..<$0 + needle.count]) == needle }
    }
}
