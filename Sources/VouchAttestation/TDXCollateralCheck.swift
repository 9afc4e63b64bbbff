import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

/// One refusal of a TDX check, carried as a policy violation.
struct TDXRefusal: Error {
    let violation: PolicyViolation
    init(_ code: ErrorCode, _ path: String, expected: String, actual: String) {
        violation = PolicyViolation(code: code, path: path, expected: expected, actual: actual)
    }
}

/// A validity window [from, until): a verdict reached at one time holds at any other time inside it.
struct TDXWindow: Sendable {
    var from = Date.distantPast
    var until = Date.distantFuture
    func contains(_ t: Date) -> Bool { from <= t && t < until }
    mutating func narrow(from f: Date, until u: Date) {
        from = max(from, f)
        until = min(until, u)
    }
    /// X.509 validity is inclusive of notAfter (to the second).
    mutating func narrow(by certificate: Certificate) { narrow(from: certificate.notBefore, until: certificate.notAfter.addingTimeInterval(1)) }
}

/// The outcome of checking one collateral set at one time, part by part, so that each part's
/// refusal is reported at its own step of the verifier's order. A class: a warm call takes it
/// from the cache with one retain rather than copying the parsed TCB info and QE identity.
final class TDXCollateralOutcome: Sendable {
    let crls: Result<TDXCRLs, TDXRefusal>
    let qeIdentity: Result<TDXQEIdentity, TDXRefusal>
    let tcbInfo: Result<TDXTCBInfo, TDXRefusal>
    /// Where every part succeeded: the window in which all of it holds.
    let window: TDXWindow?
    /// This check's serial (`TDXVerificationCache.nextSerial`): what checks against this
    /// collateral's CRLs are cached under, when the outcome itself is cached.
    let serial: UInt64
    /// Whether the outcome is cached (every part verified), and so may key other entries.
    var isCached: Bool { window != nil }

    init(crls: Result<TDXCRLs, TDXRefusal>, qeIdentity: Result<TDXQEIdentity, TDXRefusal>, tcbInfo: Result<TDXTCBInfo, TDXRefusal>,
         window: TDXWindow?, serial: UInt64) {
        self.crls = crls
        self.qeIdentity = qeIdentity
        self.tcbInfo = tcbInfo
        self.window = window
        self.serial = serial
    }
}

struct TDXCRLs: Sendable {
    let pck: CRL
    let root: CRL
}

/// A PCK certificate chain that verified: the leaf's key and SGX extension.
struct TDXVerifiedPCK: Sendable {
    let key: PublicKey
    let sgx: SGXPCKExtension
    let window: TDXWindow
    /// The PCK certificate's issuer (RFC 2253), from the chain as verified.
    let issuer: String
    /// Where the chain is cached; nil when it is not (checked against collateral that is not).
    let cacheKey: TDXChainKey?
}

extension TDXVerifier {
    /// Checks the collateral at `now`, part by part (see `verify` steps 3, 7 and 9):
    /// - CRLs: the root CA CRL parses, is signed by a pinned root and is current
    ///   (thisUpdate ≤ now < nextUpdate); the PCK CRL parses and is current (its signature is
    ///   checked against the PCK certificate's issuer in step 4);
    /// - QE identity and TCB info each: the issuer chain (the TCB signing certificate) verifies to
    ///   a pinned root at `now` against the root CA CRL; its leaf is not a CA; the ECDSA P-256
    ///   signature verifies over the exact signed bytes; only then is the JSON read; the QE
    ///   identity is TD_QE version 2, the TCB info TDX version 3 with tcbType 0; and
    ///   issueDate ≤ now < nextUpdate.
    func checkCollateral(_ c: TDXCollateral, at now: Date) -> TDXCollateralOutcome {
        if let cached = cache.collateral(c, at: now) { return cached }
        let serial = cache.nextSerial()
        var window = TDXWindow()
        let crls = checkCRLs(c, at: now, window: &window)
        let outcome: TDXCollateralOutcome
        switch crls {
        case let .failure(r):
            outcome = TDXCollateralOutcome(crls: .failure(r), qeIdentity: .failure(r), tcbInfo: .failure(r), window: nil, serial: serial)
        case let .success(pair):
            var signers: [String: Result<PublicKey, TDXRefusal>] = [:]   // one chain verification per distinct PEM
            func signer(_ pem: String, _ path: String) -> Result<PublicKey, TDXRefusal> {
                if let s = signers[pem] { return s }
                let s = tcbSigner(pem, path: path, rootCRL: pair.root, at: now, window: &window)
                signers[pem] = s
                return s
            }
            let qe = signer(c.qeIdentityIssuerChain, "collateral.qeIdentityIssuerChain").flatMap { key in
                signedJSON(c.qeIdentity, key: key, path: "collateral.qeIdentity", at: now, window: &window) { bytes in
                    let identity = try TDXQEIdentity(json: bytes)
                    guard identity.id == "TD_QE", identity.version == 2 else {
                        throw TDXRefusal(.tdxQEIdentityMismatch, "collateral.qeIdentity.id", expected: "TD_QE version 2", actual: "\(identity.id) version \(identity.version)")
                    }
                    return (identity, identity.issueDate, identity.nextUpdate)
                }
            }
            let tcb = signer(c.tcbInfoIssuerChain, "collateral.tcbInfoIssuerChain").flatMap { key in
                signedJSON(c.tcbInfo, key: key, path: "collateral.tcbInfo", at: now, window: &window) { bytes in
                    let info = try TDXTCBInfo(json: bytes)
                    guard info.id == "TDX", info.version == 3, info.tcbType == 0 else {
                        throw TDXRefusal(.tdxTCBInfoMismatch, "collateral.tcbInfo.id", expected: "TDX version 3, tcbType 0",
                                         actual: "\(info.id) version \(info.version), tcbType \(info.tcbType)")
                    }
                    return (info, info.issueDate, info.nextUpdate)
                }
            }
            let allGood: Bool
            if case .success = qe, case .success = tcb { allGood = true } else { allGood = false }
            outcome = TDXCollateralOutcome(crls: .success(pair), qeIdentity: qe, tcbInfo: tcb, window: allGood ? window : nil, serial: serial)
        }
        cache.store(outcome, for: c)
        return outcome
    }

    private func checkCRLs(_ c: TDXCollateral, at now: Date, window: inout TDXWindow) -> Result<TDXCRLs, TDXRefusal> {
        func parse(_ der: [UInt8], _ path: String) -> Result<CRL, TDXRefusal> {
            guard der.count <= TDXCollateral.maxFieldBytes, let crl = try? CRL(der: der) else {
                return .failure(TDXRefusal(.teeEvidenceMalformed, path, expected: "a DER CRL", actual: "\(der.count) bytes that do not parse"))
            }
            return .success(crl)
        }
        func current(_ crl: CRL, _ path: String) -> TDXRefusal? {
            guard crl.thisUpdate <= now, now < crl.nextUpdate else {
                return TDXRefusal(.tdxCRLInvalid, path, expected: "thisUpdate <= \(now.iso8601) < nextUpdate",
                                  actual: "thisUpdate \(crl.thisUpdate.iso8601), nextUpdate \(crl.nextUpdate.iso8601)")
            }
            window.narrow(from: crl.thisUpdate, until: crl.nextUpdate)
            return nil
        }
        return parse(c.rootCACRL, "collateral.rootCaCrl").flatMap { root in
            guard roots.contains(where: { $0.subject == root.issuer && root.isSigned(by: $0) }) else {
                return .failure(TDXRefusal(.tdxCRLInvalid, "collateral.rootCaCrl", expected: "signed by a pinned root", actual: "issuer \(root.issuer)"))
            }
            if let r = current(root, "collateral.rootCaCrl") { return .failure(r) }
            return parse(c.pckCRL, "collateral.pckCrl").flatMap { pck in
                if let r = current(pck, "collateral.pckCrl") { return .failure(r) }
                return .success(TDXCRLs(pck: pck, root: root))
            }
        }
    }

    /// Every certificate of a PEM chain (at most 8), read strictly, or nil: the text must be
    /// only CERTIFICATE blocks (base64 lines between BEGIN and END) and blank lines, each block
    /// exactly one DER certificate, in path order (each issued by the next by name, the last a
    /// pinned root or issued by one); a self-signed certificate must be byte for byte a pinned
    /// root (the chain's copy of the root is never what is trusted, and is not skipped either).
    func strictChain(_ pem: String) -> [Certificate]? {
        var ders: [[UInt8]] = []
        var block: [UInt8]?
        let text = Array(pem.utf8)
        var start = 0
        while start <= text.count {   // every line, the last one too (a text ending in a newline ends in an empty line)
            let end = text[start...].firstIndex(of: 0x0a) ?? text.count
            var line = text[start..<end]
            start = end + 1
            if line.last == 0x0d { line = line.dropLast() }   // CRLF line ends read as LF
            if block != nil {
                if line.elementsEqual(Self.pemEnd) {
                    guard let der = Data(base64Encoded: Data(block!)) else { return nil }
                    ders.append([UInt8](der))
                    block = nil
                } else {
                    guard line.allSatisfy(Self.isBase64) else { return nil }
                    block?.append(contentsOf: line)
                }
            } else if line.elementsEqual(Self.pemBegin) {
                block = []
            } else {
                guard line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else { return nil }
            }
            guard ders.count <= 8 else { return nil }
        }
        guard block == nil, !ders.isEmpty else { return nil }
        var certs: [Certificate] = []
        for der in ders {
            // A pinned root's exact bytes are that root (already parsed: parsing a certificate
            // costs OpenSSL 3.0 a decoder context for its key).
            if let root = rootsByDER[der] {
                certs.append(root)
                continue
            }
            guard let cert = try? Certificate(der: der), (try? cert.der) == der, !cert.isSelfSigned else { return nil }
            certs.append(cert)
        }
        // One path, in order: each certificate issued by the next, the last a pinned root or
        // issued by one. No certificate is carried along unused.
        for i in certs.indices.dropLast() where certs[i].issuer != certs[i + 1].subject { return nil }
        guard let last = certs.last, let lastDER = ders.last, rootsByDER[lastDER] != nil || roots.contains(where: { $0.subject == last.issuer }) else { return nil }
        return certs
    }

    private static let pemBegin = Array("-----BEGIN CERTIFICATE-----".utf8), pemEnd = Array("-----END CERTIFICATE-----".utf8)

    private static func isBase64(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2b || c == 0x2f || c == 0x3d
    }

    /// The TCB signing key, after its chain verified.
    private func tcbSigner(_ pem: String, path: String, rootCRL: CRL, at now: Date, window: inout TDXWindow) -> Result<PublicKey, TDXRefusal> {
        guard pem.utf8.count <= TDXCollateral.maxFieldBytes, let certs = strictChain(pem) else {
            return .failure(TDXRefusal(.tdxCollateralChainInvalid, path, expected: "a PEM certificate chain", actual: "no certificates"))
        }
        let leaf = certs[0]
        if let e = leaf.verify(anchors: roots, intermediates: Array(certs.dropFirst()), crls: [rootCRL], at: now) {
            return .failure(TDXRefusal(.tdxCollateralChainInvalid, path, expected: "a chain to a pinned root, valid at \(now.iso8601)", actual: e.message))
        }
        guard !leaf.isCA, let key = try? leaf.publicKey, key.isEC else {
            return .failure(TDXRefusal(.tdxCollateralChainInvalid, path, expected: "an EC signing certificate that is not a CA", actual: leaf.subject))
        }
        // Intel's TCB signing certificate is issued by the root itself and is no PCK certificate:
        // a PCK leaf (issued by a Platform or Processor CA, carrying the SGX extension) never signs
        // collateral, whatever else its chain allows.
        guard roots.contains(where: { $0.subject == leaf.issuer }), leaf.extensionValue(oid: SGXPCKExtension.oid) == nil else {
            return .failure(TDXRefusal(.tdxCollateralChainInvalid, path, expected: "a TCB signing certificate issued by the pinned root, without the SGX extension",
                                       actual: leaf.subject))
        }
        for cert in certs { window.narrow(by: cert) }
        return .success(key)
    }

    /// Verifies `signed` with `key` over its exact bytes, then reads it and checks its window.
    private func signedJSON<T>(_ signed: TDXSignedJSON, key: PublicKey, path: String, at now: Date, window: inout TDXWindow,
                               read: ([UInt8]) throws -> (T, Date, Date)) -> Result<T, TDXRefusal> {
        guard verifyRS(signed.signature, signed.bytes, key: key) else {
            return .failure(TDXRefusal(.tdxCollateralSignatureInvalid, path, expected: "an ECDSA P-256 signature by the TCB signing key over the exact bytes",
                                       actual: "signature does not verify"))
        }
        let value: T, issue: Date, next: Date
        do { (value, issue, next) = try read(signed.bytes) } catch let r as TDXRefusal {
            return .failure(r)
        } catch let e as VouchError {
            return .failure(TDXRefusal(.teeEvidenceMalformed, e.context["field"].map { "collateral.\($0)" } ?? path, expected: e.context["expected"] ?? "", actual: e.message))
        } catch {
            return .failure(TDXRefusal(.teeEvidenceMalformed, path, expected: "", actual: "\(error)"))
        }
        guard issue <= now, now < next else {
            return .failure(TDXRefusal(.tdxCollateralExpired, path, expected: "issueDate <= \(now.iso8601) < nextUpdate",
                                       actual: "issueDate \(issue.iso8601), nextUpdate \(next.iso8601)"))
        }
        window.narrow(from: issue, until: next)
        return .success(value)
    }

    /// Step 4: the PCK certificate chain from the quote (PEM, leaf first) to a pinned root at
    /// `now`. With collateral, the PCK CRL must be for and signed by the PCK certificate's issuer,
    /// and neither the PCK certificate nor its CA may be listed (PCK CRL, root CA CRL). Then the
    /// leaf (not a CA) must carry a readable SGX extension and a P-256 key. Cached by the
    /// chain's exact bytes and the collateral it was checked with (`collateral`, whose CRLs are
    /// `crls`), within the window it holds; not cached against collateral that is not cached.
    func checkPCKChain(_ chainBytes: [UInt8], collateral: TDXCollateralOutcome?, crls: TDXCRLs?, at now: Date) -> Result<TDXVerifiedPCK, TDXRefusal> {
        var key: TDXChainKey?
        if let collateral {
            if collateral.isCached { key = TDXChainKey(chain: ExactBytes(chainBytes), collateral: collateral.serial) }
        } else {
            key = TDXChainKey(chain: ExactBytes(chainBytes), collateral: nil)
        }
        if let key, let hit = cache.chain(key, at: now) { return .success(hit) }
        let path = "quote.certificationData.pckCertChain"
        let text = String(decoding: chainBytes.prefix { $0 != 0 }, as: UTF8.self)
        guard let certs = strictChain(text) else {
            return .failure(TDXRefusal(.tdxPCKChainInvalid, path, expected: "a PEM certificate chain", actual: "no certificates"))
        }
        let leaf = certs[0]
        var window = TDXWindow()
        if let crls {
            for crl in [crls.pck, crls.root] { window.narrow(from: crl.thisUpdate, until: crl.nextUpdate) }
            guard let issuer = certs.dropFirst().first(where: { $0.subject == leaf.issuer }) else {
                return .failure(TDXRefusal(.tdxPCKChainInvalid, path, expected: "the PCK certificate's issuer in the chain", actual: "issuer \(leaf.issuer) missing"))
            }
            guard crls.pck.issuer == leaf.issuer, crls.pck.isSigned(by: issuer) else {
                return .failure(TDXRefusal(.tdxCRLInvalid, "collateral.pckCrl", expected: "a CRL signed by \(leaf.issuer)", actual: "issuer \(crls.pck.issuer)"))
            }
        }
        if let e = leaf.verify(anchors: roots, intermediates: Array(certs.dropFirst()), crls: crls.map { [$0.pck, $0.root] } ?? [], at: now) {
            let revoked = e.context["x509_error"] == "23"   // X509_V_ERR_CERT_REVOKED
            return .failure(TDXRefusal(revoked ? .tdxPCKRevoked : .tdxPCKChainInvalid, path,
                                       expected: "a chain to a pinned root, valid and unrevoked at \(now.iso8601)", actual: e.message))
        }
        guard !leaf.isCA, let pub = try? leaf.publicKey, pub.isEC, pub.bits == 256 else {
            return .failure(TDXRefusal(.tdxPCKChainInvalid, path, expected: "a P-256 PCK certificate that is not a CA", actual: leaf.subject))
        }
        guard let der = leaf.extensionValue(oid: SGXPCKExtension.oid) else {
            return .failure(TDXRefusal(.tdxPCKExtensionInvalid, path, expected: "the SGX extension \(SGXPCKExtension.oid)", actual: "absent"))
        }
        let sgx: SGXPCKExtension
        do { sgx = try SGXPCKExtension(der: der) } catch {
            return .failure(TDXRefusal(.tdxPCKExtensionInvalid, path, expected: "a well-formed SGX extension", actual: (error as? VouchError)?.message ?? "\(error)"))
        }
        for cert in certs { window.narrow(by: cert) }
        let verified = TDXVerifiedPCK(key: pub, sgx: sgx, window: window, issuer: leaf.issuer, cacheKey: key)
        if let key { cache.store(chain: verified, key: key) }
        return .success(verified)
    }
}
