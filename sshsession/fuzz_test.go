package sshsession

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// FuzzPgidFilter feeds the filter of the process-group header any stderr
// from the peer, in any pieces ("@" in the input stands for the header's
// token): what passes through is the input with at most one line taken
// out, a header line among the first ones, and the pgid comes from that
// line only.
func FuzzPgidFilter(f *testing.F) {
	f.Add("motd line\n@4242\nreal stderr\n", []byte{5, 1})
	f.Add("a\nb", []byte{1})
	f.Add("@1\nx\n", []byte{2})
	f.Add("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n@77\n", []byte{3})
	f.Add("@+12\n@13\n", []byte{64})
	f.Fuzz(func(t *testing.T, text string, steps []byte) {
		var out bytes.Buffer
		prefix, flt := pgidHeader(&out)
		tok := strings.TrimSuffix(strings.TrimPrefix(prefix, "echo "), "$$ >&2; ")
		data := []byte(strings.ReplaceAll(text, "@", tok))
		for off, k := 0, 0; off < len(data); k++ {
			step := len(data)
			if len(steps) > 0 {
				step = int(steps[k%len(steps)])*64 + 1
			}
			end := min(off+step, len(data))
			flt.Write(data[off:end])
			off = end
		}
		flt.flush()
		pgid := flt.waitPgid(0)
		got := out.Bytes()
		if bytes.Equal(got, data) {
			if pgid != 0 {
				t.Fatalf("%q: pgid %d with no header line taken out", data, pgid)
			}
			return
		}
		// Exactly one whole line is missing: find it (the first that fits).
		i, j := -1, -1
		for s := 0; s < len(data); {
			e := bytes.IndexByte(data[s:], '\n')
			if e < 0 {
				break
			}
			if len(got) == len(data)-e-1 && bytes.Equal(got[:s], data[:s]) && bytes.Equal(got[s:], data[s+e+1:]) {
				i, j = s, e
				break
			}
			s += e + 1
		}
		if i < 0 {
			t.Fatalf("%q: output %q is not the input less one line", data, got)
		}
		line := data[i : i+j]
		if !bytes.HasPrefix(line, []byte(tok)) {
			t.Fatalf("%q: took out %q, not a header line", data, line)
		}
		if n := bytes.Count(data[:i], []byte("\n")); n >= pgidMaxLines {
			t.Fatalf("%q: took out line %d", data, n+1)
		}
		want := 0
		if n, err := strconv.Atoi(string(line[len(tok):])); err == nil && n > 1 {
			want = n
		}
		if pgid != want {
			t.Fatalf("%q: pgid %d, want %d", data, pgid, want)
		}
	})
}
