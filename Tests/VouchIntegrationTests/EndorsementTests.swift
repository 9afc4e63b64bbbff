import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

/// Endorsement keys against a real swtpm (an RSA EK from template L-1 and an ECC P-384 EK from
/// H-3, each with a certificate from the TPM's local CA): ECC credential activation, the TCG
/// template and certificate-profile checks with forged inputs, and the host identity.
final class EndorsementTests: XCTestCase {
    func trust(_ tpm: SwTPM) throws -> EKTrustStore {
        try EKTrustStore(anchors: [Certificate(pem: String(contentsOf: tpm.rootCA, encoding: .utf8))],
                         intermediates: [Certificate(pem: String(contentsOf: tpm.issuerCA, encoding: .utf8))])
    }

    func testECCMakeCredentialActivatesInTheTPM() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        // L-2 (P-256, SHA-256, PolicySecret) is re-created from its template; H-3 (P-384,
        // SHA-384, PolicyOR) is swtpm's persisted EK.
        for template in [EKTemplate.eccP256, .eccP384High, .rsa2048] {
            let (ek, ekBytes) = try device.endorsementKey(template)
            let ekPublic = try TPMTPublic(tpm2bPublic: ekBytes)
            XCTAssertNil(template.mismatch(ekPublic), "\(template)")
            let (ak, akBytes) = try device.createAttestationKey(.eccP256)
            let name = CredentialProtection.name(of: try TPMTPublic(tpm2bPublic: akBytes))
            let secret = try Crypto.randomBytes(32)
            let made = try CredentialProtection.makeCredential(ek: ekPublic, objectName: name, credential: secret)
            let recovered = try device.activateCredential(ak: ak, ek: ek, ekTemplate: template, credentialBlob: made.credentialBlob,
                                                          encryptedSecret: made.encryptedSecret)
            XCTAssertEqual(recovered, secret, "\(template)")

            var otherName = name
            otherName[otherName.count - 1] ^= 1
            let wrong = try CredentialProtection.makeCredential(ek: ekPublic, objectName: otherName, credential: secret)
            XCTAssertThrowsError(try device.activateCredential(ak: ak, ek: ek, ekTemplate: template, credentialBlob: wrong.credentialBlob,
                                                               encryptedSecret: wrong.encryptedSecret)) {
                XCTAssertEqual(($0 as? VouchError)?.code, .tpm)
            }
            device.flush(ak)
            device.flush(ek)
        }
    }

    func testEKPoliciesAreTheirDefinitions() {
        // PolicyA = H(H(0…0 ‖ TPM_CC_PolicySecret ‖ TPM_RH_ENDORSEMENT) ‖ empty policyRef);
        // PolicyB = H(0…0 ‖ TPM_CC_PolicyOR ‖ PolicyA ‖ PolicyC).
        for (alg, a, b, c) in [(HashAlg.sha256, EKPolicies.policyASHA256, EKPolicies.policyBSHA256, EKPolicies.policyCSHA256),
                               (.sha384, EKPolicies.policyASHA384, EKPolicies.policyBSHA384, EKPolicies.policyCSHA384)] {
            let zero = [UInt8](repeating: 0, count: alg.digestSize)
            XCTAssertEqual(Crypto.digest(alg, Crypto.digest(alg, zero + [0, 0, 0x01, 0x51, 0x40, 0, 0, 0x0b])), a)
            XCTAssertEqual(Crypto.digest(alg, zero + [0, 0, 0x01, 0x71] + a + c), b)
        }
    }

    func testBothSwtpmEKsVerify() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        var ids: Set<String> = []
        for kind in EKTemplate.Kind.allCases {
            let e = try device.endorsement(kind)
            let verified = try EndorsementVerifier.verify(ekCertificateDER: e.certificate, ekPublic: e.ekPublic, trust: trust(tpm), now: Date()).get()
            XCTAssertEqual(verified.ekTemplate, kind == .rsa ? .rsa2048 : .eccP384High)
            XCTAssertEqual(verified.tpm.model, "swtpm")
            XCTAssertEqual(verified.hostID, try EKIdentity.hostID(ekCertificateDER: e.certificate))
            XCTAssertEqual(verified.hostID.count, 32)
            XCTAssertEqual(verified.hostID, verified.hostID.lowercased())
            ids.insert(verified.hostID)
        }
        XCTAssertEqual(ids.count, 2, "a different key gives a different host id")
    }

    func testForgedEKPublicAreasAreRefused() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        for kind in EKTemplate.Kind.allCases {
            let e = try device.endorsement(kind)
            let genuine = try TPMTPublic(tpm2bPublic: e.ekPublic)
            var forgeries: [(String, [UInt8])] = [
                ("userWithAuth flipped", reencode(genuine, attributes: genuine.attributes.symmetricDifference(.userWithAuth))),
                ("stClear added", reencode(genuine, attributes: genuine.attributes.union(.stClear))),
                ("authPolicy emptied", reencode(genuine, authPolicy: [])),
                ("authPolicy changed", reencode(genuine, authPolicy: EKPolicies.policyASHA384.map { $0 ^ 1 })),
                ("symmetric key size", reencode(genuine, symmetricBits: genuine.symmetricKeyBits == 128 ? 256 : 128)),
                ("nameAlg", reencode(genuine, nameAlg: genuine.nameAlg == .sha256 ? .sha384 : .sha256)),
            ]
            if kind == .rsa {
                forgeries.append(("exponent 65537 spelled out", reencode(genuine, exponent: 65537)))
            } else {
                forgeries.append(("kdf set", reencode(genuine, kdf: (TPMAlg.kdf1SP800_56A.rawValue, TPMAlg.sha256.rawValue))))
            }
            // The re-encoder itself reproduces the genuine area.
            XCTAssertEqual(reencode(genuine), e.ekPublic)
            for (what, bytes) in forgeries {
                let result = EndorsementVerifier.verify(ekCertificateDER: e.certificate, ekPublic: bytes, trust: try trust(tpm), now: Date())
                guard case let .failure(error) = result else { XCTFail("\(kind) \(what): accepted"); continue }
                XCTAssertEqual(error.code, .ekTemplateMismatch, "\(kind) \(what): \(error)")
            }
        }
    }

    func testEKCertificateProfile() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        let e = try device.endorsement(.ecc)
        let dir = try TestEnv.tempDir("vouch-ekcert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPEM = dir.appendingPathComponent("ek.pem")
        try Certificate(der: e.certificate).publicKey.pem.write(to: keyPEM, atomically: true, encoding: .utf8)

        let tpmDN = "dirName:tpm_dn\n[tpm_dn]\nx.2.23.133.2.1 = id:00001014\nx.2.23.133.2.2 = swtpm\nx.2.23.133.2.3 = id:20191023\n"
        let cases: [(String, String, ErrorCode?)] = [
            ("the profile (SAN and EKU)", "extendedKeyUsage = 2.23.133.8.1\nsubjectAltName = critical," + tpmDN, nil),
            ("SAN without EKU", "subjectAltName = critical," + tpmDN, nil),
            ("no SAN", "extendedKeyUsage = 2.23.133.8.1\n", .ekCertificateProfile),
            ("SAN without the TPM version", "subjectAltName = critical,dirName:tpm_dn\n[tpm_dn]\nx.2.23.133.2.1 = id:00001014\nx.2.23.133.2.2 = swtpm\n", .ekCertificateProfile),
            ("SAN naming a DNS name only", "subjectAltName = DNS:tpm.example\n", .ekCertificateProfile),
            ("EKU for TLS", "extendedKeyUsage = serverAuth\nsubjectAltName = critical," + tpmDN, .ekCertificateProfile),
        ]
        var ids: Set<String> = []
        for (i, (what, ext, expected)) in cases.enumerated() {
            let der = try forgeCertificate(tpm: tpm, key: keyPEM, extensions: ext, dir: dir, serial: i + 1)
            let result = EndorsementVerifier.verify(ekCertificateDER: der, ekPublic: e.ekPublic, trust: try trust(tpm), now: Date())
            switch (result, expected) {
            case let (.success(v), nil): ids.insert(v.hostID)
            case let (.failure(error), code?): XCTAssertEqual(error.code, code, "\(what): \(error)")
            case let (.failure(error), nil): XCTFail("\(what): refused: \(error)")
            case (.success, _?): XCTFail("\(what): accepted")
            }
        }
        // A reissued certificate for the same key names the same host.
        ids.insert(try EndorsementVerifier.verify(ekCertificateDER: e.certificate, ekPublic: e.ekPublic, trust: try trust(tpm), now: Date()).get().hostID)
        XCTAssertEqual(ids.count, 1)
    }

    func testHostIDIgnoresTheKeysEncoding() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        for kind in EKTemplate.Kind.allCases {
            let e = try device.endorsement(kind)
            let genuine = try TPMTPublic(tpm2bPublic: e.ekPublic)
            let id = try EKIdentity.hostID(ekCertificateDER: e.certificate)
            // The EK public area as sent, and re-encoded (exponent 65537 spelled out, another attribute bit).
            XCTAssertEqual(try EKIdentity.hostID(ekKey: PublicKey(tpmPublic: genuine)), id)
            let reencoded = try TPMTPublic(tpm2bPublic: reencode(genuine, attributes: genuine.attributes.union(.noDA), exponent: kind == .rsa ? 65537 : nil))
            XCTAssertNotEqual(reencoded.raw, genuine.raw)
            XCTAssertEqual(try EKIdentity.hostID(ekKey: PublicKey(tpmPublic: reencoded)), id)
        }
        // An EC key given with a compressed point is the same key.
        let e = try device.endorsement(.ecc)
        let dir = try TestEnv.tempDir("vouch-ekkey")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pem = dir.appendingPathComponent("ek.pem"), compressed = dir.appendingPathComponent("ek-c.der")
        try Certificate(der: e.certificate).publicKey.pem.write(to: pem, atomically: true, encoding: .utf8)
        let r = try TestEnv.run("openssl", ["ec", "-pubin", "-in", pem.path, "-conv_form", "compressed", "-pubout", "-outform", "DER", "-out", compressed.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let compressedDER = try Array(Data(contentsOf: compressed))
        XCTAssertNotEqual(compressedDER, try Certificate(der: e.certificate).publicKey.spkiDER)
        XCTAssertEqual(try EKIdentity.hostID(ekKey: PublicKey(spkiDER: compressedDER)), try EKIdentity.hostID(ekCertificateDER: e.certificate))
    }

    /// Registers a host with its ECC EK through the real daemon and attester, and enrolls an agent.
    func testECCEKRegistersAndEnrolls() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--ek", "ecc"])
        defer { attester.stop() }
        let out = broker.dir.appendingPathComponent("agent").path
        let enroll = try broker.vouch(["enroll", "--name", "agent-1", "--out", out], socket: socket)
        XCTAssertEqual(enroll.status, 0, enroll.stderr + attester.log + broker.log)
        let host = try XCTUnwrap(broker.status().hosts.first)
        XCTAssertEqual(host.akState, "active")
        let device = try TPMDevice(tcti: tpm.tcti)
        let ecc = try device.endorsement(.ecc)
        XCTAssertEqual(host.hostId, try EKIdentity.hostID(ekCertificateDER: ecc.certificate))
        XCTAssertNotEqual(host.hostId, try EKIdentity.hostID(ekCertificateDER: device.endorsement(.rsa).certificate))
        let cert = try Certificate(pem: String(contentsOfFile: out + "/agent-1.pem", encoding: .utf8))
        XCTAssertEqual(cert.uriSANs, ["spiffe://vouch.test/host/\(host.hostId)/agent/agent-1"])
    }

    /// Through the broker's API: a re-encoded EK public area is a 403 with its own code, and
    /// the same EK registered from both encodings would have been one host.
    func testBrokerRefusesAReencodedEK() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let device = try TPMDevice(tcti: tpm.tcti)
        let e = try device.endorsement(.rsa)
        let (_, akPublic) = try device.createAttestationKey(.eccP256)
        device.close()
        let forged = reencode(try TPMTPublic(tpm2bPublic: e.ekPublic), exponent: 65537)
        XCTAssertThrowsError(try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
            ekCertificate: Base64.encode(e.certificate), ekPublic: Base64.encode(forged), akPublic: Base64.encode(akPublic), hostname: "h"),
            as: RegisterHostResponse.self)) { error in
            XCTAssertEqual((error as? APIFailure)?.status, 403)
            XCTAssertEqual((error as? APIFailure)?.error.code, "ek_template_mismatch", "\(error)")
        }
        let registered = try broker.client().call("POST", "/v1/hosts", body: RegisterHostRequest(
            ekCertificate: Base64.encode(e.certificate), ekPublic: Base64.encode(e.ekPublic), akPublic: Base64.encode(akPublic), hostname: "h"),
            as: RegisterHostResponse.self)
        XCTAssertEqual(registered.hostId, try EKIdentity.hostID(ekCertificateDER: e.certificate))
    }

    // MARK: Helpers

    /// Marshals `pub` again as TPM2B_PUBLIC, with the given fields replaced.
    func reencode(_ pub: TPMTPublic, nameAlg: HashAlg? = nil, attributes: ObjectAttributes? = nil, authPolicy: [UInt8]? = nil,
                  symmetricBits: UInt16? = nil, exponent: UInt32? = nil, kdf: (UInt16, UInt16)? = nil) -> [UInt8] {
        var w = ByteWriter()
        w.u16(pub.type.rawValue)
        w.u16((nameAlg ?? pub.nameAlg).tpmAlg.rawValue)
        w.u32((attributes ?? pub.attributes).rawValue)
        w.sized(authPolicy ?? pub.authPolicy)
        w.u16(pub.symmetric.rawValue); w.u16(symmetricBits ?? pub.symmetricKeyBits); w.u16(pub.symmetricMode)
        w.u16(pub.scheme.rawValue)
        switch pub.key {
        case let .rsa(modulus, _, keyBits):
            w.u16(keyBits)
            w.u32(exponent ?? pub.rsaExponentField)
            w.sized(modulus)
        case let .ecc(curve, x, y):
            w.u16(curve.rawValue)
            if let kdf { w.u16(kdf.0); w.u16(kdf.1) } else { w.u16(pub.kdfScheme) }
            w.sized(x); w.sized(y)
        }
        var outer = ByteWriter()
        outer.sized(w.bytes)
        return outer.bytes
    }

    /// A certificate for `key` signed by the TPM's own local CA (so it chains), with `extensions`.
    func forgeCertificate(tpm: SwTPM, key: URL, extensions: String, dir: URL, serial: Int) throws -> [UInt8] {
        let ext = dir.appendingPathComponent("ext-\(serial).cnf"), out = dir.appendingPathComponent("cert-\(serial).der")
        try "[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,keyAgreement\n\(extensions)".write(to: ext, atomically: true, encoding: .utf8)
        let r = try TestEnv.run("openssl", ["x509", "-new", "-force_pubkey", key.path, "-subj", "/CN=ek", "-set_serial", "\(serial)",
                                            "-CA", tpm.issuerCA.path, "-CAkey", tpm.caDir.appendingPathComponent("signkey.pem").path,
                                            "-extfile", ext.path, "-extensions", "ext", "-days", "2", "-outform", "DER", "-out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try Array(Data(contentsOf: out))
    }
}
