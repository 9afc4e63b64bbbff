// Interop peer for Vouch's signed notes, built offline by SignedNoteInteropTests against
// Debian's golang.org/x/mod/sumdb/note (golang-golang-x-mod-dev, GO111MODULE=off).
//
//	generate NAME              print a fresh skey and vkey (one a line)
//	sign SKEY FILE             print FILE's text signed by SKEY
//	verify VKEY FILE           print the text of the note in FILE, verified by VKEY
//	cosign NAME TIME FILE      print a fresh cosignature/v1 vkey, then FILE's text cosigned at TIME
//	cosign-verify VKEY FILE    print the cosignature's time, then the text, verified by VKEY
//
// The cosignature/v1 signer and verifier are written here from c2sp.org/tlog-cosignature (the
// note package has only Ed25519 type 0x01 keys); the note package parses and encodes the lines.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const cosignatureType = 0x04

type cosigner struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
	time uint64
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }
func (c *cosigner) Sign(msg []byte) ([]byte, error) {
	sig := make([]byte, 8, 8+ed25519.SignatureSize)
	binary.BigEndian.PutUint64(sig, c.time)
	return append(sig, ed25519.Sign(c.priv, cosignedMessage(c.time, msg))...), nil
}

type coverifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
	seen uint64
}

func (v *coverifier) Name() string    { return v.name }
func (v *coverifier) KeyHash() uint32 { return v.hash }
func (v *coverifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > 1<<63-1 {
		return false
	}
	v.seen = t
	return ed25519.Verify(v.pub, cosignedMessage(t, msg), sig[8:])
}

func cosignedMessage(t uint64, text []byte) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), text...)
}

func keyHash(name string, typ byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', typ})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func parseCosignerVKey(vkey string) (*coverifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("malformed vkey")
	}
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || err2 != nil || len(key) != 33 || key[0] != cosignatureType {
		return nil, errors.New("malformed cosigner vkey")
	}
	if keyHash(parts[0], cosignatureType, key[1:]) != uint32(hash) {
		return nil, errors.New("cosigner vkey hash mismatch")
	}
	return &coverifier{name: parts[0], hash: uint32(hash), pub: ed25519.PublicKey(key[1:])}, nil
}

// openFile verifies the note in path with v alone.
func openFile(path string, v note.Verifier) (*note.Note, error) {
	msg, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return note.Open(msg, note.VerifierList(v))
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage")
	}
	switch args[0] {
	case "generate":
		skey, vkey, err := note.GenerateKey(rand.Reader, args[1])
		if err != nil {
			return err
		}
		fmt.Printf("%s\n%s\n", skey, vkey)
	case "sign":
		signer, err := note.NewSigner(args[1])
		if err != nil {
			return err
		}
		text, err := os.ReadFile(args[2])
		if err != nil {
			return err
		}
		msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
		if err != nil {
			return err
		}
		os.Stdout.Write(msg)
	case "verify":
		v, err := note.NewVerifier(args[1])
		if err != nil {
			return err
		}
		n, err := openFile(args[2], v)
		if err != nil {
			return err
		}
		os.Stdout.WriteString(n.Text)
	case "cosign":
		t, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return err
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		text, err := os.ReadFile(args[3])
		if err != nil {
			return err
		}
		c := &cosigner{name: args[1], hash: keyHash(args[1], cosignatureType, pub), priv: priv, time: t}
		msg, err := note.Sign(&note.Note{Text: string(text)}, c)
		if err != nil {
			return err
		}
		fmt.Printf("%s+%08x+%s\n", c.name, c.hash, base64.StdEncoding.EncodeToString(append([]byte{cosignatureType}, pub...)))
		os.Stdout.Write(msg)
	case "cosign-verify":
		v, err := parseCosignerVKey(args[1])
		if err != nil {
			return err
		}
		n, err := openFile(args[2], v)
		if err != nil {
			return err
		}
		fmt.Printf("%d\n%s", v.seen, n.Text)
	default:
		return errors.New("unknown command " + args[0])
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
