/// Small relying-party programs for other TLS stacks, written to a scratch directory and run by
/// `TLSStackInteropTests`. Each reads the files the test wrote into DIR:
///   ca.pem (issuing CA), agent.pem + agent.key (valid agent), revoked.pem (revoked agent),
///   host.pem + host.key (host certificate), crl.der, ocsp-good.der, ocsp-revoked.der,
///   broker-ca.pem (the broker CA, which signs the EAR)
/// and prints one `ok …` line per check; any failure prints `FAIL …` and exits non-zero.
enum InteropPrograms {
    /// Go, standard library only: crypto/x509 parsing and chain verification, the CRL
    /// (x509.ParseRevocationList, signature and entries), the OCSP answers (encoding/asn1, the
    /// CA's signature), the CMW extension and its EAR, and a TLS server requiring client
    /// certificates (tls.RequireAndVerifyClientCert) that accepts the agent and host certificates.
    static let go = #"""
package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

var dir string

func fail(format string, a ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", a...)
	os.Exit(1)
}

func read(name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		fail("read %s: %v", name, err)
	}
	return b
}

func cert(name string) *x509.Certificate {
	block, _ := pem.Decode(read(name))
	if block == nil {
		fail("%s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fail("parse %s: %v", name, err)
	}
	return c
}

var idPeCMW = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 35}

// The EAR in the CMW extension: a UTF8String holding a JSON record [type, base64url(JWT), ind];
// the JWT's ES256 signature verifies with the first x5c certificate, which chains to the broker CA.
func ear(c *x509.Certificate, brokerCA *x509.Certificate) map[string]interface{} {
	for _, e := range c.Extensions {
		if !e.Id.Equal(idPeCMW) {
			continue
		}
		if e.Critical {
			fail("the CMW extension is critical")
		}
		var text string
		if rest, err := asn1.UnmarshalWithParams(e.Value, &text, "utf8"); err != nil || len(rest) != 0 {
			fail("CMW is not a UTF8String: %v", err)
		}
		var record []interface{}
		if err := json.Unmarshal([]byte(text), &record); err != nil || len(record) != 3 {
			fail("CMW is not a 3-member JSON record: %v", err)
		}
		if record[0] != `application/eat+jwt; eat_profile="tag:github.com,2023:veraison/ear"` || record[2] != float64(8) {
			fail("CMW record type/ind: %v %v", record[0], record[2])
		}
		jwt, err := base64.RawURLEncoding.DecodeString(record[1].(string))
		if err != nil {
			fail("CMW value: %v", err)
		}
		parts := strings.Split(string(jwt), ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || len(parts) != 3 {
			fail("EAR is not a compact JWS: %v", err)
		}
		var header struct {
			Alg string
			X5c []string
		}
		headerJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err != nil || json.Unmarshal(headerJSON, &header) != nil || header.Alg != "ES256" || len(header.X5c) == 0 {
			fail("EAR header: %s", headerJSON)
		}
		der, _ := base64.StdEncoding.DecodeString(header.X5c[0])
		signer, err := x509.ParseCertificate(der)
		if err != nil {
			fail("EAR signer: %v", err)
		}
		brokerRoots := x509.NewCertPool()
		brokerRoots.AddCert(brokerCA)
		if _, err := signer.Verify(x509.VerifyOptions{Roots: brokerRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			fail("EAR signer does not chain to the broker CA: %v", err)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		key, isEC := signer.PublicKey.(*ecdsa.PublicKey)
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		if err != nil || !isEC || len(sig) != 64 ||
			!ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			fail("EAR signature does not verify")
		}
		var claims map[string]interface{}
		if err := json.Unmarshal(payload, &claims); err != nil {
			fail("EAR claims: %v", err)
		}
		return claims
	}
	fail("no CMW extension")
	return nil
}

type responseBytes struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}
type ocspResponse struct {
	Status asn1.Enumerated
	Bytes  responseBytes `asn1:"explicit,tag:0,optional"`
}
type basicResponse struct {
	TBS   asn1.RawValue
	Alg   pkix.AlgorithmIdentifier
	Sig   asn1.BitString
	Certs []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}
type certID struct {
	Alg      pkix.AlgorithmIdentifier
	NameHash []byte
	KeyHash  []byte
	Serial   *big.Int
}
type singleResponse struct {
	ID         certID
	Status     asn1.RawValue
	ThisUpdate time.Time       `asn1:"generalized"`
	NextUpdate time.Time       `asn1:"generalized,explicit,tag:0,optional"`
	Exts       []pkix.Extension `asn1:"explicit,tag:1,optional"`
}
type responseData struct {
	Version    int `asn1:"optional,explicit,default:0,tag:0"`
	Responder  asn1.RawValue
	ProducedAt time.Time `asn1:"generalized"`
	Responses  []singleResponse
	Exts       []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

// An OCSP answer signed by the CA about `serial`: its status tag (0 good, 1 revoked).
func ocsp(name string, ca *x509.Certificate, serial *big.Int) int {
	var r ocspResponse
	if _, err := asn1.Unmarshal(read(name), &r); err != nil || r.Status != 0 {
		fail("%s: OCSPResponse %v status %d", name, err, r.Status)
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(r.Bytes.Response, &basic); err != nil {
		fail("%s: BasicOCSPResponse %v", name, err)
	}
	algs := map[string]x509.SignatureAlgorithm{"1.2.840.10045.4.3.2": x509.ECDSAWithSHA256, "1.2.840.10045.4.3.3": x509.ECDSAWithSHA384,
		"1.2.840.113549.1.1.11": x509.SHA256WithRSA}
	alg, known := algs[basic.Alg.Algorithm.String()]
	if !known {
		fail("%s: signature algorithm %v", name, basic.Alg.Algorithm)
	}
	if err := ca.CheckSignature(alg, basic.TBS.FullBytes, basic.Sig.Bytes); err != nil {
		fail("%s: the CA's signature does not verify: %v", name, err)
	}
	var data responseData
	if _, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil || len(data.Responses) != 1 {
		fail("%s: ResponseData %v", name, err)
	}
	single := data.Responses[0]
	if single.ID.Serial.Cmp(serial) != 0 {
		fail("%s: answers for serial %x, not %x", name, single.ID.Serial, serial)
	}
	return single.Status.Tag
}

func main() {
	dir = os.Args[1]
	ca, agent, revoked, host, brokerCA := cert("ca.pem"), cert("agent.pem"), cert("revoked.pem"), cert("host.pem"), cert("broker-ca.pem")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for name, c := range map[string]*x509.Certificate{"agent": agent, "revoked": revoked, "host": host} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				fail("verify %s: %v", name, err)
			}
		}
	}
	fmt.Println("ok x509 verify agent host")

	claims := ear(agent, brokerCA)
	hostClaims, _ := claims["vouch.host"].(map[string]interface{})
	fmt.Printf("ok ear signed hostId=%v\n", hostClaims["hostId"])

	crl, err := x509.ParseRevocationList(read("crl.der"))
	if err != nil {
		fail("parse CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		fail("CRL signature: %v", err)
	}
	if time.Now().After(crl.NextUpdate) {
		fail("CRL is stale")
	}
	listed := map[string]bool{}
	for _, r := range crl.RevokedCertificates {
		listed[r.SerialNumber.String()] = true
	}
	if !listed[revoked.SerialNumber.String()] || listed[agent.SerialNumber.String()] {
		fail("CRL entries: revoked listed %v, valid listed %v", listed[revoked.SerialNumber.String()], listed[agent.SerialNumber.String()])
	}
	fmt.Println("ok crl signed, lists the revoked agent only")

	if s := ocsp("ocsp-good.der", ca, agent.SerialNumber); s != 0 {
		fail("OCSP for the valid agent: status %d", s)
	}
	if s := ocsp("ocsp-revoked.der", ca, revoked.SerialNumber); s != 1 {
		fail("OCSP for the revoked agent: status %d", s)
	}
	fmt.Println("ok ocsp good revoked")

	// A TLS server that requires and verifies client certificates; the client checks the server's
	// chain and SPIFFE ID itself (URI SANs only, as go-spiffe does).
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "host.pem"), filepath.Join(dir, "host.key"))
	if err != nil {
		fail("host key pair: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		fail("listen: %v", err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				t := c.(*tls.Conn)
				if err := t.Handshake(); err != nil {
					return
				}
				peer := t.ConnectionState().PeerCertificates[0]
				io.WriteString(c, peer.URIs[0].String()+"\n")
			}(conn)
		}
	}()
	dial := func(certFile, keyFile string) string {
		client, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
		if err != nil {
			fail("client key pair %s: %v", certFile, err)
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{Certificates: []tls.Certificate{client}, InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				leaf, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
				return err
			}})
		if err != nil {
			fail("TLS handshake with %s: %v", certFile, err)
		}
		defer conn.Close()
		line, err := io.ReadAll(conn)
		if err != nil || len(line) == 0 {
			fail("the server closed the connection from %s without answering: %v", certFile, err)
		}
		return strings.TrimSpace(string(line))
	}
	fmt.Printf("ok tls client-auth agent=%s\n", dial("agent.pem", "agent.key"))
	fmt.Printf("ok tls client-auth host=%s\n", dial("host.pem", "host.key"))
}
"""#

    /// Java 17: CertificateFactory parses the certificates and the CRL; PKIX CertPathValidator
    /// with revocation checking from the CRL (a CertStore, no network) accepts the valid agent
    /// and the host and refuses the revoked agent with reason REVOKED.
    static let java = #"""
import java.io.FileInputStream;
import java.nio.file.Path;
import java.security.cert.*;
import java.util.*;

public class Interop {
    static Path dir;
    static CertificateFactory cf;

    static X509Certificate cert(String name) throws Exception {
        try (var in = new FileInputStream(dir.resolve(name).toFile())) { return (X509Certificate) cf.generateCertificate(in); }
    }

    static void validate(String name, X509Certificate c, TrustAnchor anchor, CertStore crls) throws Exception {
        var params = new PKIXParameters(Set.of(anchor));
        params.addCertStore(crls);
        params.setRevocationEnabled(true);
        CertPathValidator.getInstance("PKIX").validate(cf.generateCertPath(List.of(c)), params);
    }

    public static void main(String[] args) throws Exception {
        dir = Path.of(args[0]);
        cf = CertificateFactory.getInstance("X.509");
        var ca = cert("ca.pem");
        X509CRL crl;
        try (var in = new FileInputStream(dir.resolve("crl.der").toFile())) { crl = (X509CRL) cf.generateCRL(in); }
        crl.verify(ca.getPublicKey());
        var crls = CertStore.getInstance("Collection", new CollectionCertStoreParameters(List.of(crl)));
        var anchor = new TrustAnchor(ca, null);
        var agent = cert("agent.pem");
        if (!agent.getNonCriticalExtensionOIDs().contains("1.3.6.1.5.5.7.1.35")) { System.out.println("FAIL no CMW extension"); System.exit(1); }
        validate("agent", agent, anchor, crls);
        validate("host", cert("host.pem"), anchor, crls);
        System.out.println("ok pkix agent host with crl");
        try {
            validate("revoked", cert("revoked.pem"), anchor, crls);
            System.out.println("FAIL the revoked agent validated");
            System.exit(1);
        } catch (CertPathValidatorException e) {
            if (e.getReason() != CertPathValidatorException.BasicReason.REVOKED) {
                System.out.println("FAIL revoked agent refused for " + e.getReason() + ": " + e.getMessage());
                System.exit(1);
            }
            System.out.println("ok pkix revoked REVOKED");
        }
    }
}
"""#

    /// Debian's python3-cryptography (38): parse every certificate and its extensions (the CMW
    /// one as an unrecognized extension), check the issuing CA's signatures on them, on the CRL
    /// and on the OCSP answers, and the statuses.
    static let python = #"""
import json, sys, base64
from pathlib import Path
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives.asymmetric import ec

d = Path(sys.argv[1])
def load(name):
    return x509.load_pem_x509_certificate((d / name).read_bytes())
def fail(msg):
    print("FAIL " + msg); sys.exit(1)

ca = load("ca.pem")
key = ca.public_key()
certs = {name: load(name + ".pem") for name in ("agent", "revoked", "host")}
for name, c in certs.items():
    exts = list(c.extensions)   # raises on an extension it cannot parse
    key.verify(c.signature, c.tbs_certificate_bytes, ec.ECDSA(c.signature_hash_algorithm))
    if c.issuer != ca.subject:
        fail(name + ": issuer")
print("ok parse and signatures agent revoked host")

cmw = certs["agent"].extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.35"))
value = cmw.value.value
if cmw.critical or value[0] != 0x0c:
    fail("CMW extension critical or not a UTF8String")
n = value[1]; body = value[2:]
if n & 0x80:
    k = n & 0x7f; n = int.from_bytes(value[2:2 + k], "big"); body = value[2 + k:]
record = json.loads(body[:n])
token = base64.urlsafe_b64decode(record[1] + "=" * (-len(record[1]) % 4)).decode()
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print("ok ear hostId=" + claims["vouch.host"]["hostId"])

crl = x509.load_der_x509_crl((d / "crl.der").read_bytes())
if not crl.is_signature_valid(key):
    fail("CRL signature")
if crl.get_revoked_certificate_by_serial_number(certs["revoked"].serial_number) is None:
    fail("CRL does not list the revoked agent")
if crl.get_revoked_certificate_by_serial_number(certs["agent"].serial_number) is not None:
    fail("CRL lists the valid agent")
print("ok crl")

for name, want in (("ocsp-good.der", ocsp.OCSPCertStatus.GOOD), ("ocsp-revoked.der", ocsp.OCSPCertStatus.REVOKED)):
    r = ocsp.load_der_ocsp_response((d / name).read_bytes())
    if r.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        fail(name + ": " + str(r.response_status))
    key.verify(r.signature, r.tbs_response_bytes, ec.ECDSA(r.signature_hash_algorithm))
    if r.certificate_status != want:
        fail(name + ": " + str(r.certificate_status))
print("ok ocsp good revoked")
"""#
}
