import VouchCore

/// The shape of a host's identifying fields: what the broker accepts at registration and
/// answers with, and what the CLI requires when it reads them back from a file (a saved evidence
/// bundle can say anything). Label names follow `Policy.labelPattern` (VouchPolicy).
public enum HostFields {
    /// At most this many labels per host.
    public static let maxLabels = 64

    /// A host id: 32 lowercase hex digits (a digest's first 16 bytes).
    public static func isHostID(_ id: String) -> Bool { Hex.isLowercase(id, length: 32...32) }

    /// A host name as DNS allows it (RFC 1123), lowercase: 1-253 characters, dot-separated
    /// labels of 1-63 letters, digits and hyphens, no label starting or ending with a hyphen (so
    /// never "." or "..").
    public static func isHostname(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 253 else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-" &&
                label.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
        }
    }

    /// A label value: up to 253 printable ASCII characters (0x21-0x7e; no space, no control).
    public static func isLabelValue(_ value: String) -> Bool {
        value.unicodeScalars.count <= 253 && value.unicodeScalars.allSatisfy { (0x21...0x7e).contains($0.value) }
    }
}
