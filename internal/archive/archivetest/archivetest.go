// Package archivetest makes the hostile tars that kumo's archive reader
// must refuse, for the tests of every package that takes a tar.
package archivetest

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"
)

// rawHeader is a ustar header block, made by hand so that it can say what
// archive/tar's writer refuses to.
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// padded pads data to whole blocks.
func padded(data string) []byte {
	b := []byte(data)
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}

// paxHeader is a PAX extended header entry holding recs.
func paxHeader(recs ...string) []byte {
	var body strings.Builder
	for i := 0; i < len(recs); i += 2 {
		rec := " " + recs[i] + "=" + recs[i+1] + "\n"
		n := len(rec)
		for len(fmt.Sprint(n+len(fmt.Sprint(n)))) != len(fmt.Sprint(n)) {
			n++
		}
		n += len(fmt.Sprint(n))
		fmt.Fprintf(&body, "%d%s", n, rec)
	}
	return append(rawHeader("PaxHeaders/x", tar.TypeXHeader, int64(body.Len())), padded(body.String())...)
}

// SparseTar is a few KB of tar holding a 4 GiB sparse file (PAX format
// 1.0, as GNU tar writes it).
func SparseTar() []byte {
	var b []byte
	b = append(b, paxHeader("GNU.sparse.major", "1", "GNU.sparse.minor", "0",
		"GNU.sparse.name", "big", "GNU.sparse.realsize", "4294967296")...)
	b = append(b, rawHeader("GNUSparseFile.0/big", tar.TypeReg, 1024)...)
	b = append(b, padded("1\n4294967295\n1\n")...)
	b = append(b, padded("x")...)
	return append(b, make([]byte, 1024)...)
}

// Sparse01Tar holds a 4 GiB sparse file in PAX format 0.1.
func Sparse01Tar() []byte {
	var b []byte
	b = append(b, paxHeader("GNU.sparse.numblocks", "1", "GNU.sparse.map", "4294967295,1", "GNU.sparse.size", "4294967296")...)
	b = append(b, rawHeader("big", tar.TypeReg, 512)...)
	b = append(b, padded("x")...)
	return append(b, make([]byte, 1024)...)
}

// ManyFiles streams a tar of n empty files, as the attack's 203k-file tar.
func ManyFiles(n int) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := range n {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/f%d", i/1000, i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}
