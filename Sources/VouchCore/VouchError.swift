/// A stable, machine-readable error code. Tests and clients match codes, never message prose.
///
/// The catalogue: every code is declared once, as a static constant of this type in the module
/// that raises it, together with the HTTP status the broker's API answers it with — there is no
/// fallback mapping. Codes are equal by their raw value; a code decoded from elsewhere (a client
/// reading an API answer) carries status 0.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    /// The HTTP status an API answer with this code has (4xx refusals, 5xx faults).
    public let status: Int
    public init(rawValue: String) { self.rawValue = rawValue; self.status = 0 }
    public init(_ rawValue: String, status: Int) {
        precondition((400...599).contains(status), "an error code's HTTP status is 4xx or 5xx")
        self.rawValue = rawValue
        self.status = status
    }
    public var description: String { rawValue }
    public static func == (a: ErrorCode, b: ErrorCode) -> Bool { a.rawValue == b.rawValue }
    public func hash(into h: inout Hasher) { h.combine(rawValue) }
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
    public static let truncated = ErrorCode("truncated", status: 400)
    public static let trailingBytes = ErrorCode("trailing_bytes", status: 400)
    public static let invalidValue = ErrorCode("invalid_value", status: 400)
    public static let unsupported = ErrorCode("unsupported", status: 400)
    // Generic
    public static let badRequest = ErrorCode("bad_request", status: 400)
    public static let notFound = ErrorCode("not_found", status: 404)
    public static let unauthorized = ErrorCode("unauthorized", status: 401)
    public static let forbidden = ErrorCode("forbidden", status: 403)
    public static let conflict = ErrorCode("conflict", status: 409)
    public static let internalError = ErrorCode("internal", status: 500)
    public static let io = ErrorCode("io", status: 500)
    public static let config = ErrorCode("config", status: 500)
    // Library failures (one code per C library)
    public static let crypto = ErrorCode("crypto", status: 500)
    public static let signatureInvalid = ErrorCode("signature_invalid", status: 400)
    public static let signerMismatch = ErrorCode("signer_mismatch", status: 400)
    public static let tpm = ErrorCode("tpm", status: 500)
    public static let database = ErrorCode("database", status: 500)
    public static let http = ErrorCode("http", status: 500)
    public static let yaml = ErrorCode("yaml", status: 400)
}
