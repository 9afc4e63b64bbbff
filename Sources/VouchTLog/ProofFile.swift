import Foundation
import VouchCore

/// A C2SP tlog-proof file (`.tlog-proof`): the entry's index, its inclusion proof, optional
/// unauthenticated extra data, and the log's checkpoint as a signed note. The note is kept as
/// opaque text here: its signatures and its body are checked by the signed-note code and
/// `CheckpointBody`, never by this parser. Nothing in a parsed file is verified.
public struct TLogProofFile: Equatable, Sendable {
    public static let header = "c2sp.org/tlog-proof@v1"
    /// Longest file parsed (a policy bound: the spec sets none).
    public static let maxBytes = 64 * 1024
    /// Longest extra data accepted.
    public static let maxExtraBytes = 8 * 1024

    /// Opaque extra data; absent when the file has no `extra` line. Not authenticated.
    public let extra: [UInt8]?
    public let index: UInt64
    /// The inclusion proof, the leaf's sibling first.
    public let proof: [[UInt8]]
    /// The signed checkpoint, verbatim (note text, blank line, signature lines).
    public let signedCheckpoint: String

    public init(extra: [UInt8]?, index: UInt64, proof: [[UInt8]], signedCheckpoint: String) throws {
        guard extra.map({ !$0.isEmpty && $0.count <= Self.maxExtraBytes }) ?? true else {
            throw Self.bad("the extra data is empty or over \(Self.maxExtraBytes) bytes")
        }
        guard index < TLogLimits.maxTreeSize else { throw Self.bad("index \(index) is over the limit") }
        guard proof.count <= TLogLimits.maxProofHashes, proof.allSatisfy({ $0.count == MerkleHasher.hashSize }) else {
            throw Self.bad("the inclusion proof has too many hashes or one of the wrong size")
        }
        guard !signedCheckpoint.isEmpty, signedCheckpoint.hasSuffix("\n"), !signedCheckpoint.hasPrefix("\n") else {
            throw Self.bad("the checkpoint is empty or does not end with a newline")
        }
        self.extra = extra
        self.index = index
        self.proof = proof
        self.signedCheckpoint = signedCheckpoint
        guard text.utf8.count <= Self.maxBytes else { throw Self.bad("the proof file is over \(Self.maxBytes) bytes") }
    }

    /// Parses a proof file: the header line, an optional `extra <base64>` line, `index <decimal>`,
    /// zero or more base64 hash lines, one empty line, then the signed checkpoint to the end.
    public init(text: String) throws {
        guard text.utf8.count <= Self.maxBytes else { throw Self.bad("the proof file is over \(Self.maxBytes) bytes") }
        guard let blank = text.range(of: "\n\n") else { throw Self.bad("no empty line before the checkpoint") }
        let head = text[..<blank.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let note = String(text[blank.upperBound...])
        var i = 0
        guard head.count >= 2, head[0] == Self.header else { throw Self.bad("the first line is not \(Self.header)") }
        i = 1
        var extra: [UInt8]?
        if head[i].hasPrefix("extra ") {
            do { extra = try Base64.decode(String(head[i].dropFirst(6)), field: "extra") } catch { throw Self.bad("the extra data is not base64") }
            i += 1
        }
        guard i < head.count, head[i].hasPrefix("index "), let index = parseDecimal(String(head[i].dropFirst(6))) else {
            throw Self.bad("no index line")
        }
        i += 1
        guard head.count - i <= TLogLimits.maxProofHashes else { throw Self.bad("the inclusion proof has too many hashes") }
        var proof: [[UInt8]] = []
        for line in head[i...] {
            guard let hash = try? Base64.decode(line, field: "proof"), hash.count == MerkleHasher.hashSize else {
                throw Self.bad("a proof line is not a base64 SHA-256 hash")
            }
            proof.append(hash)
        }
        try self.init(extra: extra, index: index, proof: proof, signedCheckpoint: note)
    }

    public var text: String {
        var lines = [Self.header]
        if let extra { lines.append("extra " + Base64.encode(extra)) }
        lines.append("index \(index)")
        lines += proof.map(Base64.encode)
        return lines.map { $0 + "\n" }.joined() + "\n" + signedCheckpoint
    }

    static func bad(_ message: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": "tlog_proof"])
    }
}
