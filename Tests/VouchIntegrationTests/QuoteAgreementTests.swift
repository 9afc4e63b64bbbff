import Foundation
import XCTest
import VouchCore
import VouchTestSupport

/// `vouch quote verify` must agree with `tpm2_checkquote` on every genuine and every forged quote,
/// for every AK type and signature scheme tpm2-tools creates and every PCR bank. Vouch verifies with
/// the AK's own scheme and hash (a PEM key's are given with `--scheme`/`--hash`, as `tpm2_checkquote
/// -g`), and an AK fixing SHA-1 only with `--allow-sha1`: both refusals are checked on their own.
///
/// Two tpm2-tools 5.4 defects are worked around, not copied:
/// - `tpm2_checkquote` rejects genuine RSA-PSS quotes (tpm2-software/tpm2-tools#3283, open):
///   for those, the oracle on genuine quotes is OpenSSL's PSS verification of the signature;
/// - it cannot read a 3072-bit RSA key from PEM (a fixed 612-byte buffer): it is given the
///   TPM2B_PUBLIC instead.
final class QuoteAgreementTests: XCTestCase {
    struct AKConfig { let alg: String, scheme: String, hash: String; var label: String { "\(alg)/\(scheme)/\(hash)" } }

    static let configs = [
        AKConfig(alg: "rsa2048", scheme: "rsassa", hash: "sha256"),
        AKConfig(alg: "rsa2048", scheme: "rsapss", hash: "sha256"),
        AKConfig(alg: "rsa2048", scheme: "rsassa", hash: "sha1"),
        AKConfig(alg: "rsa2048", scheme: "rsassa", hash: "sha512"),
        AKConfig(alg: "rsa3072", scheme: "rsassa", hash: "sha384"),
        AKConfig(alg: "rsa3072", scheme: "rsapss", hash: "sha512"),
        AKConfig(alg: "ecc256", scheme: "ecdsa", hash: "sha256"),
        AKConfig(alg: "ecc384", scheme: "ecdsa", hash: "sha384"),
        AKConfig(alg: "ecc521", scheme: "ecdsa", hash: "sha512"),
    ]

    func testAgreementWithTPM2Checkquote() throws {
        let tpm = try SwTPM(banks: SwTPM.allBanks)
        let d = tpm.dir.path
        func tool(_ name: String, _ args: [String]) throws -> TestEnv.RunResult {
            let r = try tpm.tools(name, args)
            XCTAssertEqual(r.status, 0, "\(name) \(args.joined(separator: " ")): \(r.stderr)")
            return r
        }
        // Two AKs per configuration: the second is "another AK of the same type".
        for (i, c) in Self.configs.enumerated() {
            for n in 0..<2 {
                _ = try tool("tpm2_createak", ["-C", "0x81010001", "-c", "\(d)/ak\(i)-\(n).ctx", "-G", c.alg, "-s", c.scheme, "-g", c.hash,
                                               "-u", "\(d)/ak\(i)-\(n).pub", "-f", "pem", "-n", "\(d)/ak\(i)-\(n).name"])
                _ = try tool("tpm2_readpublic", ["-c", "\(d)/ak\(i)-\(n).ctx", "-o", "\(d)/ak\(i)-\(n).tpm2b"])
                _ = try tool("tpm2_flushcontext", ["-t"])
                _ = try? tpm.tools("tpm2_flushcontext", ["-s"])
            }
        }
        var checked = 0, refusedSHA1 = 0
        let seed = TestSeed()   // the nonces
        var rng = seed.generator
        for (i, c) in Self.configs.enumerated() {
            let banks = (c.alg == "ecc256" || (c.alg == "rsa2048" && c.scheme == "rsassa" && c.hash == "sha256")) ? ["sha1", "sha256", "sha384", "sha512"] : ["sha256"]
            for bank in banks {
                let nonceBytes = (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let nonce = Hex.encode(nonceBytes)
                let wrongNonce = Hex.encode([nonceBytes[0] ^ 0x01] + nonceBytes.dropFirst())
                let q = "\(d)/q\(i)-\(bank)"
                _ = try tool("tpm2_quote", ["-c", "\(d)/ak\(i)-0.ctx", "-l", "\(bank):0,1,2,3,4,5,6,7,16,23", "-q", nonce,
                                            "-m", "\(q).msg", "-s", "\(q).sig", "-o", "\(q).pcrs", "-g", c.hash, "--scheme", c.scheme])
                _ = try tool("tpm2_flushcontext", ["-t"])
                let files = try ["msg", "sig", "pcrs"].map { try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(q).\($0)"))) }
                let other = (i + 1) % Self.configs.count
                let cases: [(String, ak: String, msg: [UInt8], sig: [UInt8], pcrs: [UInt8], nonce: String, valid: Bool)] = [
                    ("genuine (TPM2B_PUBLIC)", "\(d)/ak\(i)-0.tpm2b", files[0], files[1], files[2], nonce, true),
                    ("genuine (PEM)", "\(d)/ak\(i)-0.pub", files[0], files[1], files[2], nonce, true),
                    ("message bit flip", "\(d)/ak\(i)-0.pub", flip(files[0], at: files[0].count / 2), files[1], files[2], nonce, false),
                    ("signature bit flip", "\(d)/ak\(i)-0.pub", files[0], flip(files[1], at: files[1].count - 4), files[2], nonce, false),
                    ("wrong nonce", "\(d)/ak\(i)-0.pub", files[0], files[1], files[2], wrongNonce, false),
                    ("forged PCR value", "\(d)/ak\(i)-0.pub", files[0], files[1], flip(files[2], at: 142), nonce, false),
                    ("another AK of the same type", "\(d)/ak\(i)-1.pub", files[0], files[1], files[2], nonce, false),
                    ("an AK of another type", "\(d)/ak\(other)-0.pub", files[0], files[1], files[2], nonce, false),
                ]
                for (label, ak, msg, sig, pcrs, n, valid) in cases {
                    try Data(msg).write(to: URL(fileURLWithPath: "\(q).t.msg"))
                    try Data(sig).write(to: URL(fileURLWithPath: "\(q).t.sig"))
                    try Data(pcrs).write(to: URL(fileURLWithPath: "\(q).t.pcrs"))
                    let theirAK = c.alg == "rsa3072" ? ak.replacingOccurrences(of: ".pub", with: ".tpm2b") : ak
                    var theirs = try TestEnv.run("tpm2_checkquote", ["-u", theirAK, "-m", "\(q).t.msg", "-s", "\(q).t.sig", "-f", "\(q).t.pcrs", "-g", c.hash, "-q", n])
                    if c.scheme == "rsapss" && valid {
                        try Data(sig.dropFirst(6)).write(to: URL(fileURLWithPath: "\(q).t.rawsig"))   // sigAlg, hash, size
                        theirs = try TestEnv.run("openssl", ["dgst", "-\(c.hash)", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:auto",
                                                             "-verify", "\(d)/ak\(i)-0.pub", "-signature", "\(q).t.rawsig", "\(q).t.msg"])
                    }
                    let ours = try TestEnv.run(TestEnv.bin("vouch"), ["quote", "verify", "--ak-public", ak, "--message", "\(q).t.msg", "--signature", "\(q).t.sig",
                                                                      "--pcrs", "\(q).t.pcrs", "--nonce", n] + schemeArgs(c, ak))
                    let what = "\(c.label) bank \(bank): \(label), \(seed)"
                    XCTAssertEqual(theirs.status == 0, valid, "oracle on \(what): \(theirs.stderr)")
                    XCTAssertEqual(ours.status, valid ? 0 : 1, "vouch on \(what): \(ours.stderr)")
                    checked += 1
                }
                // Vouch only (tpm2_checkquote has neither rule): the AK decides the hash, and SHA-1
                // needs --allow-sha1.
                func ours(_ ak: String, _ sig: [UInt8], _ extra: [String]) throws -> (Int32, String?) {
                    try Data(sig).write(to: URL(fileURLWithPath: "\(q).t.sig"))
                    let r = try TestEnv.run(TestEnv.bin("vouch"), ["quote", "verify", "--ak-public", ak, "--message", "\(q).msg", "--signature", "\(q).t.sig",
                                                                   "--pcrs", "\(q).pcrs", "--nonce", nonce, "--json"] + extra)
                    let json = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                    return (r.status, json?["code"] as? String)
                }
                var otherHash = files[1]
                otherHash[3] = c.hash == "sha256" ? 0x0C : 0x0B   // TPMT_SIGNATURE.hash: SHA-384 or SHA-256
                for ak in ["\(d)/ak\(i)-0.tpm2b", "\(d)/ak\(i)-0.pub"] {
                    let (status, code) = try ours(ak, otherHash, schemeArgs(c, ak))
                    XCTAssertEqual(status, 1, "\(c.label) bank \(bank) \(ak): signature naming another hash")
                    XCTAssertEqual(code, "quote_signature_scheme_mismatch", "\(c.label) bank \(bank) \(ak)")
                    if c.hash == "sha1" {
                        let (status, code) = try ours(ak, files[1], schemeArgs(c, ak).filter { $0 != "--allow-sha1" })
                        XCTAssertEqual(status, 1, "\(c.label) bank \(bank) \(ak): SHA-1 AK without --allow-sha1")
                        XCTAssertEqual(code, "ak_scheme_not_allowed", "\(c.label) bank \(bank) \(ak)")
                        refusedSHA1 += 1
                    }
                }
            }
        }
        XCTAssertEqual(checked, (Self.configs.count + 6) * 8)
        XCTAssertEqual(refusedSHA1, 2)
    }

    /// A PEM key names no scheme: it is given as tpm2_checkquote's `-g` is. A TPM2B_PUBLIC fixes its
    /// own. SHA-1 AKs need the explicit allowance.
    private func schemeArgs(_ c: AKConfig, _ ak: String) -> [String] {
        (ak.hasSuffix(".pub") ? ["--scheme", c.scheme, "--hash", c.hash] : []) + (c.hash == "sha1" ? ["--allow-sha1"] : [])
    }

    func testUsageAndUnreadableInputExitTwo() throws {
        let dir = try TestEnv.tempDir("vouch-quote")
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = dir.appendingPathComponent("junk").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: junk))
        let vouch = TestEnv.bin("vouch")
        XCTAssertEqual(try TestEnv.run(vouch, ["quote", "verify", "--message", junk]).status, 2, "missing options")
        XCTAssertEqual(try TestEnv.run(vouch, ["quote", "verify", "--ak-public", junk, "--message", junk, "--signature", junk, "--nonce", "00"]).status, 2, "AK not a key")
        XCTAssertEqual(try TestEnv.run(vouch, ["quote", "verify", "--ak-public", "/nonexistent", "--message", junk, "--signature", junk, "--nonce", "00"]).status, 2)
        XCTAssertEqual(try TestEnv.run(vouch, ["quote", "verify", "--ak-public", junk, "--message", junk, "--signature", junk, "--nonce", "zz"]).status, 2)
        XCTAssertEqual(try TestEnv.run(vouch, ["quote", "verify", "--ak-public", junk, "--message", junk, "--signature", junk, "--nonce", "00", "--nonce-file", junk]).status, 2)
    }

    private func flip(_ b: [UInt8], at i: Int) -> [UInt8] {
        var c = b
        c[i] ^= 0x01
        return c
    }
}
