// Command tlog-interop prints Merkle tree hashes, inclusion and consistency proofs, tile paths
// and tile contents computed by golang.org/x/mod/sumdb/tlog (Debian's golang-golang-x-mod-dev)
// for a fixed log, one fact per line. VouchTLogTests/InteropTests builds it offline
// (GO111MODULE=off, GOPATH=/usr/share/gocode), prints the same facts from VouchTLog and
// compares the two texts line by line.
//
// Entry i of the log is the text "entry <i>". Tile paths are printed in C2SP tlog-tiles form:
// Go's paths carry the tile height ("tile/8/L/N"), C2SP fixes it at 8 and leaves it out.
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const size = 70000

type store []tlog.Hash

func (s store) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

func hexes(hs []tlog.Hash) string {
	if len(hs) == 0 {
		return "-"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = hex.EncodeToString(h[:])
	}
	return strings.Join(parts, ",")
}

func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

// published lists the tiles a tree of n entries has that one of old entries does not, in their
// final shapes: NewTiles also lists every narrower partial tile on the way (sumdb serves tiles
// at every size) and an unchanged partial tile of a level that did not grow; both are dropped.
func published(old, n int64) []tlog.Tile {
	had := map[string]bool{}
	for _, t := range tlog.NewTiles(8, 0, old) {
		had[t.Path()] = true
	}
	list := tlog.NewTiles(8, old, n)
	var out []tlog.Tile
	for i, t := range list {
		if had[t.Path()] || (i+1 < len(list) && list[i+1].L == t.L && list[i+1].N == t.N) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func main() {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	var s store
	for i := int64(0); i < size; i++ {
		hs, err := tlog.StoredHashes(i, []byte(fmt.Sprintf("entry %d", i)), s)
		if err != nil {
			panic(err)
		}
		s = append(s, hs...)
	}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	root := func(n int64) tlog.Hash {
		h, err := tlog.TreeHash(n, s)
		must(err)
		return h
	}
	// Every tree of 1 to 70 entries: its root, every inclusion proof, every consistency proof.
	for n := int64(1); n <= 70; n++ {
		r := root(n)
		fmt.Fprintf(w, "root %d %s\n", n, hex.EncodeToString(r[:]))
		for i := int64(0); i < n; i++ {
			p, err := tlog.ProveRecord(n, i, s)
			must(err)
			fmt.Fprintf(w, "inclusion %d %d %s\n", i, n, hexes(p))
		}
		for m := int64(1); m <= n; m++ {
			p, err := tlog.ProveTree(n, m, s)
			must(err)
			fmt.Fprintf(w, "consistency %d %d %s\n", m, n, hexes(p))
		}
	}
	// Larger trees, at and around tile boundaries.
	sizes := []int64{255, 256, 257, 511, 512, 4097, 65535, 65536, 65537, 69999, 70000}
	for _, n := range sizes {
		r := root(n)
		fmt.Fprintf(w, "root %d %s\n", n, hex.EncodeToString(r[:]))
		for _, i := range []int64{0, 1, n / 3, n / 2, n - 2, n - 1} {
			p, err := tlog.ProveRecord(n, i, s)
			must(err)
			fmt.Fprintf(w, "inclusion %d %d %s\n", i, n, hexes(p))
		}
		for _, m := range sizes {
			if m > n {
				continue
			}
			p, err := tlog.ProveTree(n, m, s)
			must(err)
			fmt.Fprintf(w, "consistency %d %d %s\n", m, n, hexes(p))
		}
	}
	// The tiles a log publishes as it grows, and the contents of some.
	steps := []int64{0, 1, 2, 255, 256, 257, 300, 65535, 65536, 65537, 69999, 70000}
	for a, old := range steps {
		for _, n := range steps[a:] {
			var paths []string
			for _, t := range published(old, n) {
				paths = append(paths, c2spPath(t))
			}
			fmt.Fprintf(w, "tiles %d %d %s\n", old, n, strings.Join(paths, " "))
		}
	}
	for _, t := range published(65000, 70000) {
		data, err := tlog.ReadTileData(t, s)
		must(err)
		fmt.Fprintf(w, "tile %s %s\n", c2spPath(t), hex.EncodeToString(data))
	}
	// The sumdb tree note, which is a C2SP checkpoint body.
	fmt.Fprintf(w, "note %s", strings.ReplaceAll(string(tlog.FormatTree(tlog.Tree{N: size, Hash: root(size)})), "\n", "|"))
	fmt.Fprintf(w, "\n")
}
