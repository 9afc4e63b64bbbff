import Foundation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// A software Intel TDX platform: a test root, PCK CA and PCK certificate (with the SGX
/// extension for a chosen FMSPC and TCB), a TCB signing certificate, a QE attestation key, and
/// the collateral (TCB info and QE identity JSON signed over their exact bytes, CRLs) — all in
/// the real formats, so `TDXVerifier` checks them exactly as it checks Intel's. Every certificate
/// names `TEESimulation.organization`; only a verifier given `roots` trusts them.
public final class SoftwareTDX: Sendable {
    /// What Intel would have certified about the platform (the PCK certificate's SGX extension).
    public struct Platform: Sendable {
        public var fmspc: [UInt8] = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00]
        public var pceID: [UInt8] = [0, 0]
        public var sgxComponents: [UInt8] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]
        public var pceSvn: UInt16 = 13
        public var ppid: [UInt8] = [UInt8](repeating: 0x5a, count: 16)
        public init() {}
    }

    /// The quoting enclave's identity as its report states it.
    public struct QE: Sendable {
        /// Intel's TD QE MRSIGNER (public; a simulated QE claims to be Intel's, signed by the test PCK).
        public var mrSigner: [UInt8] = [0xdc, 0x9e, 0x2a, 0x7c, 0x6f, 0x94, 0x8f, 0x17, 0x47, 0x4e, 0x34, 0xa7, 0xfc, 0x43, 0xed, 0x03,
                                        0x0f, 0x7c, 0x15, 0x63, 0xf1, 0xba, 0xbd, 0xdf, 0x63, 0x40, 0xc8, 0x2e, 0x0e, 0x54, 0xa8, 0xc5]
        public var isvProdID: UInt16 = 2
        public var isvSvn: UInt16 = 6
        public var miscSelect: UInt32 = 0
        public var attributes: [UInt8] = [0x11] + [UInt8](repeating: 0, count: 15)
        public init() {}
    }

    /// An Intel-signed TDX module's MRSIGNERSEAM (zero).
    public static let moduleMRSigner = [UInt8](repeating: 0, count: 48)

    public let platform: Platform
    public let qe: QE
    public let root: CertificateAuthority
    public let pckCA: CertificateAuthority
    public let pckCertificate: Certificate
    public let tcbSigningCertificate: Certificate
    /// The simulation's signing keys (a simulated platform kept across restarts saves them).
    public let pckKey: PrivateKey
    public let tcbSigningKey: PrivateKey
    public let attestationKey: PrivateKey

    /// The roots a verifier must be given to trust this platform.
    public var roots: [Certificate] { [root.certificate] }

    public init(platform: Platform = Platform(), qe: QE = QE(), notBefore: Date, notAfter: Date) throws {
        let org = ("O", TEESimulation.organization)
        self.platform = platform
        self.qe = qe
        root = try CertificateAuthority.tdxSimulationRoot(subject: [("CN", "Simulated SGX Root CA"), org], key: try PrivateKey.generate(),
                                                          notBefore: notBefore, notAfter: notAfter)
        pckCA = try root.tdxSimulationCA(subject: [("CN", "Simulated SGX PCK Platform CA"), org], key: try PrivateKey.generate(),
                                         notBefore: notBefore, notAfter: notAfter)
        pckKey = try PrivateKey.generate()
        let sgx = SGXPCKExtension(ppid: platform.ppid, tcbComponents: platform.sgxComponents, pceSvn: platform.pceSvn, cpuSvn: platform.sgxComponents,
                                  pceID: platform.pceID, fmspc: platform.fmspc)
        pckCertificate = try pckCA.tdxSimulationLeaf(subject: [("CN", "Simulated SGX PCK Certificate"), org], publicKey: try pckKey.publicKey,
                                                     notBefore: notBefore, notAfter: notAfter, extensions: [(SGXPCKExtension.oid, sgx.encoded)])
        tcbSigningKey = try PrivateKey.generate()
        tcbSigningCertificate = try root.tdxSimulationLeaf(subject: [("CN", "Simulated SGX TCB Signing"), org], publicKey: try tcbSigningKey.publicKey,
                                                           notBefore: notBefore, notAfter: notAfter)
        attestationKey = try PrivateKey.generate()
    }

    /// A platform made before, from its keys and certificates as they were (a simulated platform
    /// kept across restarts). Nothing is checked: the verifier judges what it signs.
    public init(platform: Platform, qe: QE = QE(), root: CertificateAuthority, pckCA: CertificateAuthority, pck: (Certificate, PrivateKey),
                tcbSigning: (Certificate, PrivateKey), attestationKey: PrivateKey) {
        self.platform = platform
        self.qe = qe
        self.root = root
        self.pckCA = pckCA
        (pckCertificate, pckKey) = pck
        (tcbSigningCertificate, tcbSigningKey) = tcbSigning
        self.attestationKey = attestationKey
    }

    /// The PCK chain as a quote carries it: PCK certificate, PCK CA, root (PEM).
    public var pckChainPEM: String {
        get throws { try pckCertificate.pem + pckCA.certificate.pem + root.certificate.pem }
    }

    /// A TD quote body for this platform: TEE_TCB_SVN `teeTcbSvn`, the module signer of the default
    /// TCB info, SEPT_VE_DISABLE set and debug clear unless `tdAttributes` says otherwise.
    public static func body(kind: TDXQuoteBody.Kind = .td10, teeTcbSvn: [UInt8] = [3, 1, 2] + [UInt8](repeating: 0, count: 13),
                            tdAttributes: [UInt8] = [0, 0, 0, 0x10, 0, 0, 0, 0], mrTD: [UInt8] = [UInt8](repeating: 0x7d, count: 48),
                            reportData: [UInt8] = [UInt8](repeating: 0, count: 64), rtmrs: [[UInt8]]? = nil) -> TDXQuoteBody {
        TDXQuoteBody(kind: kind, teeTcbSvn: teeTcbSvn, mrSeam: [UInt8](repeating: 0x5e, count: 48), mrSignerSeam: moduleMRSigner, tdAttributes: tdAttributes,
                     xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0], mrTD: mrTD, rtmrs: rtmrs ?? [[UInt8]](repeating: [UInt8](repeating: 0, count: 48), count: 4),
                     reportData: reportData)
    }

    /// A quote (v4, or v5 with the body's type in its descriptor) over `body`: the QE report binds
    /// the attestation key and `qeAuthData` and is signed by the PCK key; the quote is signed by
    /// the attestation key.
    public func quote(_ body: TDXQuoteBody, version: UInt16 = 4, qeAuthData: [UInt8] = Array(0..<32)) throws -> [UInt8] {
        guard version == 4 || version == 5, version == 5 || body.kind == .td10 else {
            throw VouchError(.teeSimulationUnsupported, "a v4 quote carries a TDX 1.0 body; v5 either", context: ["got": "\(version)"])
        }
        let header = TDXQuoteHeader(version: version)
        let key = try Self.rawPoint(try attestationKey.publicKey)
        let report = SGXReportBody(cpuSvn: platform.sgxComponents, miscSelect: qe.miscSelect, attributes: qe.attributes, mrSigner: qe.mrSigner,
                                   isvProdID: qe.isvProdID, isvSvn: qe.isvSvn, reportData: Crypto.sha256(key + qeAuthData) + [UInt8](repeating: 0, count: 32))
        let certification = TDXQECertificationData(qeReport: report, qeReportSignature: try Self.rawSignature(pckKey, report.raw), qeAuthData: qeAuthData,
                                                    pckCertChain: Array(try pckChainPEM.utf8) + [0])
        let signature = try Self.rawSignature(attestationKey, TDXQuote.signedBytes(header: header, body: body))
        return TDXQuote.encode(header: header, body: body, signatureData: TDXQuoteSignatureData(signature: signature, attestationKey: key, certification: certification))
    }

    /// The TCB info a PCS would serve for this platform.
    public struct TCBInfo: Sendable {
        public var issueDate: Date
        public var nextUpdate: Date
        public var fmspc: [UInt8]
        public var pceID: [UInt8]
        public var tcbEvaluationDataNumber = 17
        public var tdxModule = TDXTCBInfo.Module(mrSigner: SoftwareTDX.moduleMRSigner, attributes: [UInt8](repeating: 0, count: 8),
                                                 attributesMask: [UInt8](repeating: 0xff, count: 8))
        public var tdxModuleIdentities: [TDXTCBInfo.ModuleIdentity]
        public var tcbLevels: [TDXTCBInfo.Level]
    }

    /// One UpToDate level exactly at this platform's SVNs (TDX components 3,1,2 as `body`'s
    /// default TEE_TCB_SVN, index 1 the module major version), and the module identity TDX_01
    /// UpToDate at ISVSVN 3.
    public func defaultTCBInfo(issueDate: Date, nextUpdate: Date, tcbDate: Date) -> TCBInfo {
        let tdx: [UInt8] = [3, 1, 2] + [UInt8](repeating: 0, count: 13)
        let module = TDXTCBInfo.Module(mrSigner: Self.moduleMRSigner, attributes: [UInt8](repeating: 0, count: 8), attributesMask: [UInt8](repeating: 0xff, count: 8))
        return TCBInfo(issueDate: issueDate, nextUpdate: nextUpdate, fmspc: platform.fmspc, pceID: platform.pceID,
                       tdxModuleIdentities: [TDXTCBInfo.ModuleIdentity(id: "TDX_01", module: module,
                                                                       tcbLevels: [TDXTCBInfo.ModuleLevel(isvSvn: 3, tcbDate: tcbDate, status: .upToDate)])],
                       tcbLevels: [TDXTCBInfo.Level(sgxComponents: platform.sgxComponents, pceSvn: platform.pceSvn, tdxComponents: tdx, tcbDate: tcbDate,
                                                    status: .upToDate)])
    }

    /// The QE identity a PCS would serve: this QE's signer and product, UpToDate at its ISVSVN.
    public struct QEIdentity: Sendable {
        public var issueDate: Date
        public var nextUpdate: Date
        public var tcbLevels: [TDXQEIdentity.Level]
    }

    public func defaultQEIdentity(issueDate: Date, nextUpdate: Date, tcbDate: Date) -> QEIdentity {
        QEIdentity(issueDate: issueDate, nextUpdate: nextUpdate, tcbLevels: [TDXQEIdentity.Level(isvSvn: qe.isvSvn, tcbDate: tcbDate, status: .upToDate)])
    }

    /// TCB info JSON in PCS's member order and spelling (uppercase hex).
    public static func json(_ t: TCBInfo) -> String {
        func h(_ b: [UInt8]) -> String { "\"\(Hex.encode(b).uppercased())\"" }
        func ids(_ a: [String]) -> String { a.isEmpty ? "" : ",\"advisoryIDs\":[\(a.map { "\"\($0)\"" }.joined(separator: ","))]" }
        func module(_ m: TDXTCBInfo.Module) -> String { "\"mrsigner\":\(h(m.mrSigner)),\"attributes\":\(h(m.attributes)),\"attributesMask\":\(h(m.attributesMask))" }
        let identities = t.tdxModuleIdentities.map { i in
            "{\"id\":\"\(i.id)\",\(module(i.module)),\"tcbLevels\":[" + i.tcbLevels.map {
                "{\"tcb\":{\"isvsvn\":\($0.isvSvn)},\"tcbDate\":\"\($0.tcbDate.iso8601)\",\"tcbStatus\":\"\($0.status.rawValue)\"\(ids($0.advisoryIDs))}"
            }.joined(separator: ",") + "]}"
        }.joined(separator: ",")
        let levels = t.tcbLevels.map { l in
            "{\"tcb\":{\"sgxtcbcomponents\":[\(l.sgxComponents.map { "{\"svn\":\($0)}" }.joined(separator: ","))],\"pcesvn\":\(l.pceSvn)," +
                "\"tdxtcbcomponents\":[\(l.tdxComponents.map { "{\"svn\":\($0)}" }.joined(separator: ","))]},\"tcbDate\":\"\(l.tcbDate.iso8601)\"," +
                "\"tcbStatus\":\"\(l.status.rawValue)\"\(ids(l.advisoryIDs))}"
        }.joined(separator: ",")
        return "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"\(t.issueDate.iso8601)\",\"nextUpdate\":\"\(t.nextUpdate.iso8601)\",\"fmspc\":\(h(t.fmspc))," +
            "\"pceId\":\(h(t.pceID)),\"tcbType\":0,\"tcbEvaluationDataNumber\":\(t.tcbEvaluationDataNumber),\"tdxModule\":{\(module(t.tdxModule))}," +
            "\"tdxModuleIdentities\":[\(identities)],\"tcbLevels\":[\(levels)]}"
    }

    /// QE identity JSON (TD_QE, version 2) for this QE.
    public func json(_ q: QEIdentity) -> String {
        func h(_ b: [UInt8]) -> String { "\"\(Hex.encode(b).uppercased())\"" }
        let misc = withUnsafeBytes(of: qe.miscSelect.bigEndian) { Array($0) }
        let levels = q.tcbLevels.map { l in
            "{\"tcb\":{\"isvsvn\":\(l.isvSvn)},\"tcbDate\":\"\(l.tcbDate.iso8601)\",\"tcbStatus\":\"\(l.status.rawValue)\"" +
                (l.advisoryIDs.isEmpty ? "" : ",\"advisoryIDs\":[\(l.advisoryIDs.map { "\"\($0)\"" }.joined(separator: ","))]") + "}"
        }.joined(separator: ",")
        return "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"\(q.issueDate.iso8601)\",\"nextUpdate\":\"\(q.nextUpdate.iso8601)\"," +
            "\"tcbEvaluationDataNumber\":17,\"miscselect\":\(h(misc)),\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\(h(qe.attributes))," +
            "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\(h(qe.mrSigner)),\"isvprodid\":\(qe.isvProdID),\"tcbLevels\":[\(levels)]}"
    }

    /// `text` signed by the TCB signing key over its exact bytes.
    public func signed(_ text: String) throws -> TDXSignedJSON {
        let bytes = Array(text.utf8)
        return try TDXSignedJSON(bytes: bytes, signature: try Self.rawSignature(tcbSigningKey, bytes))
    }

    /// The collateral: `tcbInfo` and `qeIdentity` JSON texts signed as they are, CRLs valid from
    /// `crlThisUpdate` to `crlNextUpdate`, the PCK certificate and/or its CA listed when asked.
    public func collateral(tcbInfo: String, qeIdentity: String, crlThisUpdate: Date, crlNextUpdate: Date,
                           revokePCK: Bool = false, revokePCKCA: Bool = false) throws -> TDXCollateral {
        let tcbChain = try tcbSigningCertificate.pem + root.certificate.pem
        let pckRevoked = revokePCK ? [RevokedEntry(serialHex: pckCertificate.serialHex, revokedAt: crlThisUpdate, reason: 1)] : []
        let caRevoked = revokePCKCA ? [RevokedEntry(serialHex: pckCA.certificate.serialHex, revokedAt: crlThisUpdate, reason: 1)] : []
        return TDXCollateral(tcbInfo: try signed(tcbInfo), tcbInfoIssuerChain: tcbChain, qeIdentity: try signed(qeIdentity), qeIdentityIssuerChain: tcbChain,
                             pckCRL: try pckCA.makeCRL(entries: pckRevoked, number: 1, thisUpdate: crlThisUpdate, nextUpdate: crlNextUpdate),
                             pckCRLIssuerChain: try pckCA.certificate.pem + root.certificate.pem,
                             rootCACRL: try root.makeCRL(entries: caRevoked, number: 1, thisUpdate: crlThisUpdate, nextUpdate: crlNextUpdate))
    }

    /// An ECDSA P-256/SHA-256 signature as raw r‖s (32 bytes each), as DCAP structures carry it.
    public static func rawSignature(_ key: PrivateKey, _ message: [UInt8]) throws -> [UInt8] {
        try TEESimulation.rawSignature(der: try key.sign(message, hash: .sha256), scalarBytes: 32)
    }

    /// A P-256 public key as x‖y.
    static func rawPoint(_ key: PublicKey) throws -> [UInt8] {
        guard let p = key.ecJWKParameters, p.crv == "P-256" else { throw VouchError(.teeSimulationUnsupported, "not a P-256 key") }
        return p.x + p.y
    }
}
