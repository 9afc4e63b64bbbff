// swift-tools-version: 6.0
// Vouch: a trusted-execution attestation broker for AI agents.
//
// Layers (a target may import only what is listed under it):
//   C*                 system libraries, one per Debian C library, plus CVouchShims (macros, variadics)
//   VouchCore          pure: errors, byte reader/writer, hex/base64, DER, clock protocol (+ SystemClock, which
//                      only reads Date()), config-node tree, HTTP values, argument parser; no file, signal or log
//   VouchRuntime       the process: files (atomic writes, reads, directories), termination signals, the
//                      process-wide log and its format; VouchCore only
//   VouchTPMWire       pure: TPM 2.0 wire structures (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE, ...)
//   VouchEventLog      pure: TCG PC Client event logs (parse, replay, claims)
//   VouchPolicy        pure: policy model and evaluation
//   VouchAPI           pure: JSON wire types shared by broker, attester and CLI
//   VouchTEEWire       pure: TEE wire formats (SEV-SNP reports, TDX DCAP quotes and their collateral, NVIDIA GPUs' SPDM measurements)
//   VouchTLog          pure: the transparency log's math and formats (RFC 9162 Merkle trees and proofs, C2SP
//                      tlog-tiles, tlog-checkpoint bodies, tlog-proof files); SHA-256 injected
//   VouchReceipts      pure: signed inference receipts' formats (DSSE envelopes, in-toto Statements with the
//                      receipt predicate, the request commitment, receipt bundles); VouchTLog for log proofs
//   VouchSPIFFE        pure: a bounded protobuf wire-format reader/writer, the SPIFFE Workload API's
//                      messages (workload.proto) and JSON values as google.protobuf.Struct
//   VouchModelSigning  pure: OpenSSF model signatures' formats (Sigstore bundles, the model-signing v1.0 manifest in an
//                      in-toto Statement, the manifest compared with measured files, Sigstore trusted roots, Rekor entries and SCTs);
//                      VouchReceipts for DSSE, VouchTLog for Rekor's inclusion proofs and checkpoints
//   VouchModel         pure: the broker's records, closed state types and store protocols (split by concern,
//                      with the unit of work); what the broker's services and every store import
//   VouchCrypto        OpenSSL: digests, keys, signatures, CSR, X.509, CRL, credential protection
//   VouchTPM           tpm2-tss ESYS: the TPM device
//   VouchStore         SQLite: the embedded store of VouchModel's protocols (VouchAttestation only for
//                      migration 4's host re-keying)
//   VouchPostgres      libpq: the PostgreSQL store of VouchModel's protocols, for several vouchd replicas on one database
//                      (writes serial under one advisory lock with group commit, reads on a pool, migrations, reconnects)
//   VouchHTTPServer    libmicrohttpd (+ GnuTLS, its TLS library, for client certificates): HTTPS, plain-HTTP and Unix-socket server
//                      (VouchRuntime for its log: libmicrohttpd's C callbacks carry no closure)
//   VouchGRPC          libnghttp2: a gRPC server (unary and server-streaming calls) on a Unix socket, h2c with prior
//                      knowledge, the peer's SO_PEERCRED with each call; one poll() thread, a thread per handler
//   VouchHTTPClient    libcurl: HTTPS (pinned CA) and Unix-socket client; answers whole or read as they arrive
//   VouchYAML          libyaml: YAML to the config-node tree
//   VouchXMLSig        libxmlsec1 (OpenSSL) + libxml2: enveloped XML-DSig verification, verified documents as values
//   VouchPolicyFiles   loads policy files and directories into a validated PolicySet (VouchRuntime: reads files)
//   VouchAttestation   verifiers: EK chain, credential activation, quotes, SEV-SNP and TDX evidence (returns
//                      verified values)
//   VouchCollateral    the optional collateral fetchers (Intel PCS: TDX TCB info, QE identity, CRLs; AMD KDS:
//                      VCEKs, CRLs) over an injected HTTPTransport, with their on-disk cache (VouchRuntime: files)
//   VouchTEESim        the software TEE: SEV-SNP reports and TDX quotes in the real formats, signed by test chains;
//                      a simulated NVIDIA Hopper board (SPDM evidence, XML-DSig-signed RIMs) kept in a directory
//                      (VouchRuntime: its files) (tests, demo and simulated fleet only)
//   VouchReceiptKit    receipts: ReceiptSigner (agent key — software, or TPM-bound through the attester socket —, certificate, EAR,
//                      issuance proof) and the offline ReceiptVerifier (chain, EAR, log proofs, CRL, revocation read from a log through
//                      VouchLogClient), over the trust document
//   VouchBroker        the broker service: orchestration over protocols, and its HTTP API (logs through an
//                      injected closure; VouchRuntime only for Bootstrap's CA, token and identity files); the transparency
//                      log (sequencer, checkpoints, tiles) and receipt intake (VouchReceiptKit verifies them)
//   VouchLogClient     a client of C2SP tlog-tiles logs (a URL through an injected HTTPTransport, or a
//                      directory): verified checkpoints, consistency and inclusion from tiles, the witness
//                      (state files: VouchRuntime) and the verified mirror
//   VouchAttesterKit   the host side: AK, registration, quotes for agents (VouchRuntime: host certificate
//                      and model log files; logs through an injected closure); model measurement with the
//                      model's signature (VouchModelSigning: parsed, never trusted); a confidential VM's reports
//                      (configfs-tsm, or the software TEE's persisted platform for tests and demos); the
//                      receipt proxy in front of an inference server (HTTP handler and upstream client)
//   vouchd, vouch-attester, vouch, vouch-bench, vouch-fuzz: executables that only wire pieces together
// Every target declares exactly the package targets it imports: scripts/check-imports.sh (run by make test).
import PackageDescription

let package = Package(
    name: "Vouch",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vouchd", targets: ["vouchd"]),
        .executable(name: "vouch-attester", targets: ["vouch-attester"]),
        .executable(name: "vouch", targets: ["vouch"]),
        .executable(name: "vouch-fuzz", targets: ["vouch-fuzz"]),
    ],
    targets: [
        // C libraries
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CTSS2", pkgConfig: "tss2-esys", providers: [.apt(["libtss2-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd", providers: [.apt(["libmicrohttpd-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CXMLSec", pkgConfig: "xmlsec1-openssl", providers: [.apt(["libxmlsec1-dev", "libxml2-dev"])]),
        .systemLibrary(name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(name: "CVouchShims", dependencies: ["COpenSSL", "CTSS2", "CCurl", "CSQLite", "CMicroHTTPD"]),

        // Pure targets
        .target(name: "VouchCore"),
        .target(name: "VouchTPMWire", dependencies: ["VouchCore"]),
        .target(name: "VouchEventLog", dependencies: ["VouchCore", "VouchTPMWire"]),
        .target(name: "VouchPolicy", dependencies: ["VouchCore", "VouchTPMWire", "VouchEventLog", "VouchTEEWire"]),
        .target(name: "VouchAPI", dependencies: ["VouchCore", "VouchEventLog"]),
        .target(name: "VouchTLog", dependencies: ["VouchCore"]),
        .target(name: "VouchReceipts", dependencies: ["VouchCore", "VouchTLog"]),
        .target(name: "VouchModel", dependencies: ["VouchCore", "VouchAPI", "VouchEventLog"]),
        .target(name: "VouchTEEWire", dependencies: ["VouchCore"]),
        .target(name: "VouchSPIFFE", dependencies: ["VouchCore"]),
        .target(name: "VouchModelSigning", dependencies: ["VouchCore", "VouchReceipts", "VouchTLog"]),

        // The process: files, signals, the process-wide log
        .target(name: "VouchRuntime", dependencies: ["VouchCore"]),

        // Thin wrappers, one C library each
        .target(name: "VouchCrypto", dependencies: ["VouchCore", "VouchTPMWire", "COpenSSL", "CVouchShims"]),
        .target(name: "VouchTPM", dependencies: ["VouchCore", "VouchTPMWire", "CTSS2", "CVouchShims"]),
        .target(name: "VouchStore", dependencies: ["VouchCore", "VouchAPI", "VouchModel", "VouchAttestation", "VouchEventLog", "CSQLite", "CVouchShims"]),
        .target(name: "VouchPostgres", dependencies: ["VouchCore", "VouchAPI", "VouchModel", "VouchEventLog", "CPQ"]),
        .target(name: "VouchHTTPServer", dependencies: ["VouchCore", "VouchRuntime", "CMicroHTTPD", "CGnuTLS", "CVouchShims"]),
        .target(name: "VouchHTTPClient", dependencies: ["VouchCore", "CCurl", "CVouchShims"]),
        .target(name: "VouchGRPC", dependencies: ["VouchCore", "VouchRuntime", "CNGHTTP2"]),
        .target(name: "VouchYAML", dependencies: ["VouchCore", "CYAML"]),
        .target(name: "VouchXMLSig", dependencies: ["VouchCore", "CXMLSec"]),

        .target(name: "VouchPolicyFiles", dependencies: ["VouchCore", "VouchRuntime", "VouchPolicy", "VouchYAML", "VouchCrypto", "VouchModelSigning"]),

        // Verification, service and host logic
        .target(name: "VouchAttestation", dependencies: ["VouchCore", "VouchTPMWire", "VouchTEEWire", "VouchCrypto", "VouchPolicy", "VouchEventLog", "VouchXMLSig",
                                                   "VouchModelSigning"]),
        .target(name: "VouchTEESim", dependencies: ["VouchCore", "VouchTEEWire", "VouchCrypto", "VouchRuntime", "VouchXMLSig"]),
        .target(name: "VouchCollateral", dependencies: ["VouchCore", "VouchRuntime", "VouchCrypto", "VouchTEEWire", "VouchAttestation"]),
        .target(name: "VouchBroker", dependencies: ["VouchCore", "VouchModel", "VouchRuntime", "VouchTPMWire", "VouchPolicy", "VouchAPI", "VouchCrypto", "VouchAttestation", "VouchEventLog", "VouchTLog", "VouchReceipts", "VouchReceiptKit"]),
        .target(name: "VouchLogClient", dependencies: ["VouchCore", "VouchTLog", "VouchCrypto", "VouchRuntime"]),
        .target(name: "VouchReceiptKit", dependencies: ["VouchCore", "VouchAPI", "VouchCrypto", "VouchAttestation", "VouchTLog", "VouchTPMWire", "VouchReceipts", "VouchLogClient"]),
        .target(name: "VouchAttesterKit", dependencies: ["VouchCore", "VouchRuntime", "VouchTPMWire", "VouchAPI", "VouchCrypto", "VouchTPM", "VouchHTTPClient", "VouchEventLog",
                                                   "VouchAttestation", "VouchTEESim", "VouchTEEWire", "VouchGRPC", "VouchSPIFFE", "VouchModelSigning"]),

        // Executables
        .executableTarget(name: "vouchd", dependencies: ["VouchBroker", "VouchModel", "VouchStore", "VouchPostgres", "VouchHTTPServer", "VouchHTTPClient", "VouchPolicyFiles", "VouchCrypto", "VouchPolicy",
                                                     "VouchYAML", "VouchAPI", "VouchAttestation", "VouchCollateral", "VouchCore", "VouchRuntime"]),
        .executableTarget(name: "vouch-attester", dependencies: ["VouchAttesterKit", "VouchHTTPServer", "VouchHTTPClient", "VouchCore", "VouchAPI", "VouchCrypto", "VouchGRPC", "VouchSPIFFE", "VouchYAML", "VouchTPMWire", "VouchRuntime", "VouchReceiptKit", "VouchReceipts"]),
        .executableTarget(name: "vouch", dependencies: ["VouchAPI", "VouchCrypto", "VouchHTTPClient", "VouchTPMWire", "VouchAttestation", "VouchEventLog", "VouchPolicy", "VouchPolicyFiles",
                                                    "VouchTEEWire", "VouchYAML", "VouchLogClient", "VouchReceipts", "VouchReceiptKit", "VouchModelSigning",
                                                    "VouchModel", "VouchStore", "VouchPostgres", "VouchCore", "VouchRuntime"]),

        .target(name: "VouchBenchKit", dependencies: ["VouchAttestation", "VouchCore", "VouchCrypto", "VouchEventLog", "VouchPolicy", "VouchTPM", "VouchTPMWire", "VouchTEEWire"],
                path: "Sources/VouchBenchKit"),
        .executableTarget(name: "vouch-bench", dependencies: ["VouchBenchKit", "VouchAttesterKit", "VouchHTTPClient", "VouchAPI", "VouchCrypto", "VouchCore", "VouchRuntime",
                                                          "VouchBroker", "VouchStore", "VouchModel", "VouchTLog", "VouchReceiptKit", "VouchReceiptTestSupport"]),
        .executableTarget(name: "vouch-fuzz", dependencies: ["VouchAPI", "VouchAttestation", "VouchCore", "VouchCrypto", "VouchEventLog",
                                                           "VouchPolicy", "VouchTEEWire", "VouchTPMWire", "VouchYAML", "VouchXMLSig", "VouchReceipts", "VouchReceiptKit",
                                                           "VouchSPIFFE", "VouchModelSigning"]),

        // Tests
        .target(name: "VouchTestSupport", dependencies: ["VouchCore", "VouchTPMWire", "VouchCrypto", "VouchTLog"], path: "Tests/VouchTestSupport"),
        .testTarget(name: "VouchTPMWireTests", dependencies: ["VouchTPMWire", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchCryptoTests", dependencies: ["VouchCrypto", "VouchTPMWire", "VouchAttestation", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchTLogTests", dependencies: ["VouchTLog", "VouchCrypto", "VouchTPMWire", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchSPIFFETests", dependencies: ["VouchSPIFFE", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchLogClientTests", dependencies: ["VouchLogClient", "VouchTLog", "VouchCrypto", "VouchCore", "VouchTestSupport"]),
        .target(name: "VouchReceiptTestSupport", dependencies: ["VouchAPI", "VouchAttestation", "VouchCore", "VouchCrypto", "VouchReceiptKit", "VouchReceipts", "VouchTLog"],
                path: "Tests/VouchReceiptTestSupport"),
        .testTarget(name: "VouchReceiptTests", dependencies: ["VouchAPI", "VouchAttestation", "VouchCore", "VouchCrypto", "VouchReceiptKit", "VouchReceipts", "VouchTLog",
                                                              "VouchReceiptTestSupport", "VouchLogClient", "VouchTestSupport", "VouchModelSigning", "VouchPolicy", "VouchEventLog"]),
        .testTarget(name: "VouchEventLogTests", dependencies: ["VouchEventLog", "VouchCrypto", "VouchTPMWire", "VouchCore", "VouchAttestation", "VouchPolicy", "VouchTestSupport",
                                                              "VouchModelSigning"]),
        .testTarget(name: "VouchPolicyTests", dependencies: ["VouchPolicy", "VouchYAML", "VouchTPMWire", "VouchPolicyFiles", "VouchEventLog", "VouchCore", "VouchCrypto"]),
        .target(name: "VouchBrokerTestSupport", dependencies: ["VouchModel", "VouchAPI", "VouchCore", "VouchEventLog"], path: "Tests/VouchBrokerTestSupport"),
        .testTarget(name: "VouchStoreTests", dependencies: ["VouchStore", "VouchAPI", "VouchModel", "VouchAttestation", "VouchCrypto", "VouchCore", "VouchEventLog",
                                                            "VouchBrokerTestSupport", "VouchPostgres", "VouchTestSupport"]),
        .testTarget(name: "VouchBrokerTests", dependencies: ["VouchBroker", "VouchModel", "VouchAttesterKit", "VouchBrokerTestSupport", "VouchTestSupport", "VouchCore", "VouchPolicy",
                                                             "VouchCrypto", "VouchAttestation", "VouchAPI", "VouchTPMWire", "VouchTEESim", "VouchTEEWire", "VouchEventLog",
                                                             "VouchStore", "VouchTLog", "VouchYAML", "VouchPostgres"]),
        .testTarget(name: "VouchTEETests", dependencies: ["VouchCrypto", "VouchCore", "VouchTestSupport", "VouchTEEWire", "VouchAttestation", "VouchTEESim", "VouchPolicy",
                                                          "VouchYAML", "VouchTPMWire", "VouchAttesterKit", "VouchEventLog", "VouchCollateral", "VouchHTTPServer",
                                                          "VouchHTTPClient", "VouchAPI", "VouchXMLSig"]),
        .testTarget(name: "VouchGRPCTests", dependencies: ["VouchGRPC", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchHTTPServerTests", dependencies: ["VouchHTTPServer", "VouchHTTPClient", "VouchCrypto", "VouchCore", "VouchTestSupport"]),
        .testTarget(name: "VouchIntegrationTests", dependencies: ["VouchTPM", "VouchModel", "VouchTPMWire", "VouchCrypto", "VouchHTTPClient", "VouchAPI", "VouchCore", "VouchAttesterKit", "VouchAttestation", "VouchYAML", "VouchStore", "VouchTestSupport",
                                                                  "VouchEventLog", "VouchRuntime", "VouchHTTPServer", "VouchTEESim", "VouchTEEWire", "VouchPolicy",
                                                                  "VouchReceipts", "VouchReceiptTestSupport", "VouchSPIFFE"]),
    ]
)
