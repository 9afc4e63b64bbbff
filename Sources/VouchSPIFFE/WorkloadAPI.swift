import VouchCore

/// The SPIFFE Workload API's messages (the SPIFFE specification's workload.proto, package-less:
/// gRPC service `SpiffeWorkloadAPI`), as values with their protobuf encodings. Each message is a
/// `ProtobufRecord` whose `fields` table is its declaration: `init(protobuf:)` reads with
/// `Protobuf.ProtoReader` (bounded; a known field with the wrong wire type is refused; unknown
/// fields skipped; strings and bytes at most 1 MiB, repeated fields and maps at most 1,024 items)
/// and `protobuf` writes the fields in number order, maps sorted by key.
public enum WorkloadAPI {
    /// The gRPC service's name, and the metadata header every call must carry with value "true"
    /// (the Workload API's protection against server-side request forgery).
    public static let serviceName = "SpiffeWorkloadAPI"
    public static let securityHeader = "workload.spiffe.io"

    /// The service's methods: `path` is the gRPC request path.
    public enum Method: String, Sendable, CaseIterable {
        case fetchX509SVID = "FetchX509SVID"
        case fetchX509Bundles = "FetchX509Bundles"
        case fetchJWTSVID = "FetchJWTSVID"
        case fetchJWTBundles = "FetchJWTBundles"
        case validateJWTSVID = "ValidateJWTSVID"

        public var path: String { "/\(WorkloadAPI.serviceName)/\(rawValue)" }
        /// FetchJWTSVID and ValidateJWTSVID answer once; the others stream updates.
        public var isServerStreaming: Bool { self != .fetchJWTSVID && self != .validateJWTSVID }
    }

    /// Every message type of the service, requests and responses.
    public static var messageTypes: [any ProtobufMessage.Type] {
        [X509SVIDRequest.self, X509SVIDResponse.self, X509BundlesRequest.self, X509BundlesResponse.self, JWTSVIDRequest.self,
         JWTSVIDResponse.self, JWTBundlesRequest.self, JWTBundlesResponse.self, ValidateJWTSVIDRequest.self, ValidateJWTSVIDResponse.self]
    }

    // MARK: X.509-SVIDs

    /// `message X509SVIDRequest {}`
    public struct X509SVIDRequest: ProtobufRecord {
        public init() {}
        public static var fields: [ProtoField<Self>] { [] }
    }

    /// `message X509SVID { string spiffe_id = 1; bytes x509_svid = 2; bytes x509_svid_key = 3; bytes bundle = 4; string hint = 5; }`
    public struct X509SVID: ProtobufRecord {
        public var spiffeID: String
        /// ASN.1 DER certificates concatenated, leaf first.
        public var x509SVID: [UInt8]
        /// The leaf's private key, PKCS#8 DER.
        public var x509SVIDKey: [UInt8]
        /// The trust domain's CA certificates, DER concatenated.
        public var bundle: [UInt8]
        /// An operator-given name telling SVIDs apart (optional).
        public var hint: String

        public init() { self.init(spiffeID: "") }
        public init(spiffeID: String = "", x509SVID: [UInt8] = [], x509SVIDKey: [UInt8] = [], bundle: [UInt8] = [], hint: String = "") {
            self.spiffeID = spiffeID; self.x509SVID = x509SVID; self.x509SVIDKey = x509SVIDKey; self.bundle = bundle; self.hint = hint
        }

        public static var fields: [ProtoField<Self>] {
            [.string(1, "X509SVID.spiffe_id", \.spiffeID), .bytes(2, "X509SVID.x509_svid", \.x509SVID),
             .bytes(3, "X509SVID.x509_svid_key", \.x509SVIDKey), .bytes(4, "X509SVID.bundle", \.bundle), .string(5, "X509SVID.hint", \.hint)]
        }
    }

    /// `message X509SVIDResponse { repeated X509SVID svids = 1; repeated bytes crl = 2; map<string, bytes> federated_bundles = 3; }`
    public struct X509SVIDResponse: ProtobufRecord {
        public var svids: [X509SVID]
        /// DER CRLs.
        public var crl: [[UInt8]]
        /// Federated trust domain (as its SPIFFE ID, `spiffe://td`) → its CA certificates, DER concatenated.
        public var federatedBundles: [String: [UInt8]]

        public init() { self.init(svids: []) }
        public init(svids: [X509SVID] = [], crl: [[UInt8]] = [], federatedBundles: [String: [UInt8]] = [:]) {
            self.svids = svids; self.crl = crl; self.federatedBundles = federatedBundles
        }

        public static var fields: [ProtoField<Self>] {
            [.messages(1, "X509SVIDResponse.svids", \.svids), .byteStrings(2, "X509SVIDResponse.crl", \.crl),
             .bytesMap(3, "X509SVIDResponse.federated_bundles", \.federatedBundles)]
        }
    }

    /// `message X509BundlesRequest {}`
    public struct X509BundlesRequest: ProtobufRecord {
        public init() {}
        public static var fields: [ProtoField<Self>] { [] }
    }

    /// `message X509BundlesResponse { repeated bytes crl = 1; map<string, bytes> bundles = 2; }`
    public struct X509BundlesResponse: ProtobufRecord {
        /// DER CRLs.
        public var crl: [[UInt8]]
        /// Trust domain (as its SPIFFE ID) → its CA certificates, DER concatenated.
        public var bundles: [String: [UInt8]]

        public init() { self.init(crl: []) }
        public init(crl: [[UInt8]] = [], bundles: [String: [UInt8]] = [:]) {
            self.crl = crl; self.bundles = bundles
        }

        public static var fields: [ProtoField<Self>] {
            [.byteStrings(1, "X509BundlesResponse.crl", \.crl), .bytesMap(2, "X509BundlesResponse.bundles", \.bundles)]
        }
    }

    // MARK: JWT-SVIDs

    /// `message JWTSVIDRequest { repeated string audience = 1; string spiffe_id = 2; }`
    public struct JWTSVIDRequest: ProtobufRecord {
        public var audience: [String]
        /// The SPIFFE ID wanted; empty for every identity the caller has.
        public var spiffeID: String

        public init() { self.init(audience: []) }
        public init(audience: [String] = [], spiffeID: String = "") {
            self.audience = audience; self.spiffeID = spiffeID
        }

        public static var fields: [ProtoField<Self>] {
            [.strings(1, "JWTSVIDRequest.audience", \.audience), .string(2, "JWTSVIDRequest.spiffe_id", \.spiffeID)]
        }
    }

    /// `message JWTSVID { string spiffe_id = 1; string svid = 2; string hint = 3; }`
    public struct JWTSVID: ProtobufRecord {
        public var spiffeID: String
        /// The JWT-SVID, compact JWS.
        public var svid: String
        public var hint: String

        public init() { self.init(spiffeID: "") }
        public init(spiffeID: String = "", svid: String = "", hint: String = "") {
            self.spiffeID = spiffeID; self.svid = svid; self.hint = hint
        }

        public static var fields: [ProtoField<Self>] {
            [.string(1, "JWTSVID.spiffe_id", \.spiffeID), .string(2, "JWTSVID.svid", \.svid), .string(3, "JWTSVID.hint", \.hint)]
        }
    }

    /// `message JWTSVIDResponse { repeated JWTSVID svids = 1; }`
    public struct JWTSVIDResponse: ProtobufRecord {
        public var svids: [JWTSVID]

        public init() { self.init(svids: []) }
        public init(svids: [JWTSVID] = []) { self.svids = svids }

        public static var fields: [ProtoField<Self>] { [.messages(1, "JWTSVIDResponse.svids", \.svids)] }
    }

    /// `message JWTBundlesRequest {}`
    public struct JWTBundlesRequest: ProtobufRecord {
        public init() {}
        public static var fields: [ProtoField<Self>] { [] }
    }

    /// `message JWTBundlesResponse { map<string, bytes> bundles = 1; }`
    public struct JWTBundlesResponse: ProtobufRecord {
        /// Trust domain (as its SPIFFE ID) → its JWKS (the SPIFFE bundle JSON), as bytes.
        public var bundles: [String: [UInt8]]

        public init() { self.init(bundles: [:]) }
        public init(bundles: [String: [UInt8]] = [:]) { self.bundles = bundles }

        public static var fields: [ProtoField<Self>] { [.bytesMap(1, "JWTBundlesResponse.bundles", \.bundles)] }
    }

    /// `message ValidateJWTSVIDRequest { string audience = 1; string svid = 2; }`
    public struct ValidateJWTSVIDRequest: ProtobufRecord {
        public var audience: String
        public var svid: String

        public init() { self.init(audience: "") }
        public init(audience: String = "", svid: String = "") {
            self.audience = audience; self.svid = svid
        }

        public static var fields: [ProtoField<Self>] {
            [.string(1, "ValidateJWTSVIDRequest.audience", \.audience), .string(2, "ValidateJWTSVIDRequest.svid", \.svid)]
        }
    }

    /// `message ValidateJWTSVIDResponse { string spiffe_id = 1; google.protobuf.Struct claims = 2; }`
    public struct ValidateJWTSVIDResponse: ProtobufRecord {
        public var spiffeID: String
        /// The token's claims: an `.object` (a Struct; read as `.object([:])` when absent). Written
        /// always, even when empty; a value that is not an object is written as an empty Struct.
        public var claims: JSONValue

        public init() { self.init(spiffeID: "") }
        public init(spiffeID: String = "", claims: JSONValue = .object([:])) {
            self.spiffeID = spiffeID; self.claims = claims
        }

        public static var fields: [ProtoField<Self>] {
            [.string(1, "ValidateJWTSVIDResponse.spiffe_id", \.spiffeID), .jsonStruct(2, "ValidateJWTSVIDResponse.claims", \.claims)]
        }
    }
}
