/// A stable, machine-readable error code. Tests and clients match codes, never message prose.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// Every failure in Vouch: a code, a sentence for humans, and structured context
/// (field, offset, expected, got, ...). No failure is ever represented by an empty message.
public struct VouchError: Error, Sendable, CustomStringConvertible, Equatable {
    public let code: ErrorCode
    public let message: String
    public let context: [String: String]
    /// The closed, typed reason a module gives for this failure (for example an
    /// `HTTPClientError`), for callers that act on the reason: they match its type, never the
    /// message or a context string. Not part of equality, the description or any wire form.
    public let cause: (any Error & Sendable)?

    public init(_ code: ErrorCode, _ message: String, context: [String: String] = [:], cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.context = context
        self.cause = cause
    }

    /// Code, message and context; the cause is a typed view of the same failure.
    public static func == (a: VouchError, b: VouchError) -> Bool {
        a.code == b.code && a.message == b.message && a.context == b.context
    }

    public var description: String {
        if context.isEmpty { return "\(code): \(message)" }
        let ctx = context.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        return "\(code): \(message) [\(ctx)]"
    }
}

extension ErrorCode {
    // Parsing of outside bytes
    public static let truncated = ErrorCode("truncated")
    public static let trailingBytes = ErrorCode("trailing_bytes")
    public static let invalidValue = ErrorCode("invalid_value")
    public static let unsupported = ErrorCode("unsupported")
    // Generic
    public static let badRequest = ErrorCode("bad_request")
    public static let notFound = ErrorCode("not_found")
    public static let unauthorized = ErrorCode("unauthorized")
    public static let forbidden = ErrorCode("forbidden")
    public static let conflict = ErrorCode("conflict")
    public static let internalError = ErrorCode("internal")
    public static let io = ErrorCode("io")
    public static let config = ErrorCode("config")
    // Library failures (one code per C library)
    public static let crypto = ErrorCode("crypto")
    public static let signatureInvalid = ErrorCode("signature_invalid")
    public static let signerMismatch = ErrorCode("signer_mismatch")
    public static let tpm = ErrorCode("tpm")
    public static let database = ErrorCode("database")
    public static let http = ErrorCode("http")
    public static let yaml = ErrorCode("yaml")
}
