// Interop client for vouchd's transparency log, built offline by BrokerLogInteropTests against
// Debian's golang.org/x/mod/sumdb/note and sumdb/tlog (golang-golang-x-mod-dev, GO111MODULE=off).
//
//	brokerlog URL CAFILE VKEY INDEX ENTRY-BASE64
//
// Fetches URL/checkpoint over HTTPS (trusting CAFILE only), verifies its signature with VKEY
// (note.Open), reads the C2SP checkpoint body (origin = the key's name, size, root), then proves
// the entry at INDEX from the log's tiles (URL/tile/L/N[.p/W], read through tlog.TileHashReader,
// which checks every tile it reads against the signed root) with tlog.ProveRecord and
// tlog.CheckRecord over tlog.RecordHash(ENTRY); and checks that the entry bundle
// (URL/tile/entries/N[.p/W]) holds ENTRY at INDEX. Prints "ok ..." lines; any failure exits 1.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base string
var client *http.Client

func fail(format string, a ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", a...)
	os.Exit(1)
}

func get(path string) []byte {
	resp, err := client.Get(base + "/" + path)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		fail("GET %s: status %d %v", path, resp.StatusCode, err)
	}
	return body
}

// c2spPath is the tlog-tiles path of a tile (sumdb's Tile.Path carries the height, "tile/8/...").
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

type httpTiles struct{ tree tlog.Tree }

func (r httpTiles) Height() int { return 8 }
func (r httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = get(c2spPath(t))
	}
	return out, nil
}
func (r httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func main() {
	if len(os.Args) != 6 {
		fail("usage: brokerlog URL CAFILE VKEY INDEX ENTRY-BASE64")
	}
	base = strings.TrimSuffix(os.Args[1], "/")
	pemBytes, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		fail("no certificate in CA file")
	}
	client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	verifier, err := note.NewVerifier(os.Args[3])
	if err != nil {
		fail("vkey: %v", err)
	}
	index, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fail("index: %v", err)
	}
	entry, err := base64.StdEncoding.DecodeString(os.Args[5])
	if err != nil {
		fail("entry: %v", err)
	}

	n, err := note.Open(get("checkpoint"), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint origin is not %s", verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		fail("checkpoint root: %v", err)
	}
	tree := tlog.Tree{N: size}
	copy(tree.Hash[:], root)
	fmt.Printf("ok checkpoint %s size %d verified with the log key\n", lines[0], size)
	if index >= size {
		fail("index %d is not in a tree of %d", index, size)
	}

	reader := tlog.TileHashReader(tree, httpTiles{tree})
	got, err := tlog.TreeHash(size, reader)
	if err != nil || got != tree.Hash {
		fail("the tiles do not hash to the signed root: %v", err)
	}
	proof, err := tlog.ProveRecord(size, index, reader)
	if err != nil {
		fail("prove record %d: %v", index, err)
	}
	if err := tlog.CheckRecord(proof, size, tree.Hash, index, tlog.RecordHash(entry)); err != nil {
		fail("check record %d: %v", index, err)
	}
	fmt.Printf("ok entry %d proved from the tiles\n", index)

	// The entry bundle holding the entry (partial at the right edge of the tree).
	bundleIndex := index / 256
	width := size - bundleIndex*256
	path := fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: bundleIndex, W: 256}.Path(), "tile/8/0/"))
	if width < 256 {
		path = fmt.Sprintf("%s.p/%d", path, width)
	}
	bundle := get(path)
	for i := int64(0); i <= index-bundleIndex*256; i++ {
		if len(bundle) < 2 {
			fail("entry bundle too short")
		}
		l := int(binary.BigEndian.Uint16(bundle))
		if len(bundle) < 2+l {
			fail("entry bundle truncated")
		}
		if i == index-bundleIndex*256 && !bytes.Equal(bundle[2:2+l], entry) {
			fail("entry bundle holds other bytes at %d", index)
		}
		bundle = bundle[2+l:]
	}
	fmt.Printf("ok entry bundle holds entry %d\n", index)
}
