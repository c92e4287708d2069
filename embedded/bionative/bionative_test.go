package bionative

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// Reference implementations: slow and obvious, written independently of
// the kernels (the genetic code codon by codon, ambiguity by enumeration).

var refCode = map[string]byte{
	"TTT": 'F', "TTC": 'F', "TTA": 'L', "TTG": 'L', "CTT": 'L', "CTC": 'L', "CTA": 'L', "CTG": 'L',
	"ATT": 'I', "ATC": 'I', "ATA": 'I', "ATG": 'M', "GTT": 'V', "GTC": 'V', "GTA": 'V', "GTG": 'V',
	"TCT": 'S', "TCC": 'S', "TCA": 'S', "TCG": 'S', "CCT": 'P', "CCC": 'P', "CCA": 'P', "CCG": 'P',
	"ACT": 'T', "ACC": 'T', "ACA": 'T', "ACG": 'T', "GCT": 'A', "GCC": 'A', "GCA": 'A', "GCG": 'A',
	"TAT": 'Y', "TAC": 'Y', "TAA": '*', "TAG": '*', "CAT": 'H', "CAC": 'H', "CAA": 'Q', "CAG": 'Q',
	"AAT": 'N', "AAC": 'N', "AAA": 'K', "AAG": 'K', "GAT": 'D', "GAC": 'D', "GAA": 'E', "GAG": 'E',
	"TGT": 'C', "TGC": 'C', "TGA": '*', "TGG": 'W', "CGT": 'R', "CGC": 'R', "CGA": 'R', "CGG": 'R',
	"AGT": 'S', "AGC": 'S', "AGA": 'R', "AGG": 'R', "GGT": 'G', "GGC": 'G', "GGA": 'G', "GGG": 'G',
}

var refIUPAC = map[byte]string{
	'A': "A", 'C': "C", 'G': "G", 'T': "T", 'U': "T", 'R': "GA", 'Y': "TC", 'S': "GC", 'W': "TA",
	'K': "TG", 'M': "CA", 'B': "TGC", 'D': "TGA", 'H': "TCA", 'V': "GCA", 'N': "TGCA",
}

var refComp = map[byte]byte{
	'A': 'T', 'C': 'G', 'G': 'C', 'T': 'A', 'U': 'A', 'R': 'Y', 'Y': 'R', 'S': 'S', 'W': 'W',
	'K': 'M', 'M': 'K', 'B': 'V', 'V': 'B', 'D': 'H', 'H': 'D', 'N': 'N', '-': '-',
}

func isSpace(b byte) bool { return strings.IndexByte(" \t\n\v\f\r", b) >= 0 }

func isLetter(b byte) bool {
	_, ok := refComp[upper(b)]
	return ok
}

func upper(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return b - 32
	}
	return b
}

func refInvalid(s string) int {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) && !isLetter(s[i]) {
			return i + 1
		}
	}
	return 0
}

func refClean(s string, keepCase bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			continue
		}
		c := s[i]
		if !keepCase {
			c = upper(c)
		}
		b.WriteByte(c)
	}
	return b.String()
}

func refRevcomp(s string) string {
	c := refClean(s, true)
	out := make([]byte, 0, len(c))
	for i := len(c) - 1; i >= 0; i-- {
		r := refComp[upper(c[i])]
		if c[i] != upper(c[i]) {
			r += 32
		}
		out = append(out, r)
	}
	return string(out)
}

func refAmino(codon string) byte {
	if strings.Contains(codon, "-") {
		if codon == "---" {
			return '-'
		}
		return 'X'
	}
	seen := map[byte]bool{}
	for _, x := range refIUPAC[codon[0]] {
		for _, y := range refIUPAC[codon[1]] {
			for _, z := range refIUPAC[codon[2]] {
				seen[refCode[string([]rune{x, y, z})]] = true
			}
		}
	}
	if len(seen) != 1 {
		return 'X'
	}
	for aa := range seen {
		return aa
	}
	return 0
}

func refTranslate(s string, frame int) string {
	c := refClean(s, false)
	if frame < 0 {
		c = refClean(refRevcomp(c), false)
		frame = -frame
	}
	var out []byte
	for i := frame - 1; i+3 <= len(c); i += 3 {
		out = append(out, refAmino(c[i:i+3]))
	}
	return string(out)
}

func refKmers(s string, k int) []Kmer {
	c := refClean(s, false)
	index := map[string]int{}
	var out []Kmer
	for i := 0; i+k <= len(c); i++ {
		w := c[i : i+k]
		if strings.Trim(w, "ACGTU") != "" {
			continue
		}
		if j, ok := index[w]; ok {
			out[j].Count++
			continue
		}
		index[w] = len(out)
		out = append(out, Kmer{w, 1})
	}
	return out
}

func randomSeq(r *rand.Rand, n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	plain    = "ACGT"
	mixed    = "ACGTACGTACGTacgtN \n"
	iupac    = "ACGTURYSWKMBDHVNacgturyswkmbdhvn- \t\r\n\v\f"
	withU    = "ACGUacgu"
	withBoth = "ACGTUacgtuNN\n"
)

func TestClean(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, alpha := range []string{plain, mixed, iupac, withU} {
		for _, n := range []int{0, 1, 5, 100, 4099} {
			s := randomSeq(r, n, alpha)
			for _, keep := range []bool{false, true} {
				got, err := Clean(s, keep, nil)
				if err != nil || got != refClean(s, keep) {
					t.Fatalf("Clean(%q, %v) = %q, %v", s, keep, got, err)
				}
			}
		}
	}
	// Already clean: the same string, no copy.
	s := strings.Repeat("ACGTN-", 100)
	if got, _ := Clean(s, false, nil); unsafe.StringData(got) != unsafe.StringData(s) {
		t.Fatal("a clean sequence was copied")
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		s   string
		pos int
		b   byte
	}{
		{"ACGTX", 5, 'X'}, {"AC1", 3, '1'}, {"ACGT\nACGT\nAC*T", 13, '*'}, {"AC\x00GT", 3, 0},
		{"ACG\xc3\x83", 4, 0xc3}, {">header\nACGT", 1, '>'}, {"  Z", 3, 'Z'}, {"acgt e", 6, 'e'},
	}
	for _, c := range cases {
		check := func(what string, err error) {
			t.Helper()
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Pos != c.pos || ie.Byte != c.b {
				t.Errorf("%s(%q): %v, want position %d", what, c.s, err, c.pos)
			}
		}
		_, err := Clean(c.s, false, nil)
		check("Clean", err)
		_, err = BaseCounts(c.s, nil)
		check("BaseCounts", err)
		_, err = ReverseComplement(c.s, nil)
		check("ReverseComplement", err)
		_, err = Translate(c.s, -2, nil)
		check("Translate", err)
		_, err = SixFrames(c.s, nil)
		check("SixFrames", err)
		_, err = KmerCounts(c.s, 2, nil)
		check("KmerCounts", err)
		_, err = KmerCounts(c.s, 1000, nil)
		check("KmerCounts (long k)", err)
		check("Validate", Validate(c.s))
	}
	if msg := (&InvalidError{Pos: 3, Byte: 0}).Error(); msg != "invalid character byte 0 at position 3" {
		t.Error(msg)
	}
	if msg := (&InvalidError{Pos: 1, Byte: '>'}).Error(); msg != "invalid character '>' at position 1" {
		t.Error(msg)
	}
	// Every byte value.
	for b := range 256 {
		s := "AC" + string([]byte{byte(b)}) + "GT"
		want := refInvalid(s)
		err := Validate(s)
		if (want == 0) != (err == nil) {
			t.Errorf("byte %d: %v, want invalid at %d", b, err, want)
		}
	}
}

func TestBaseCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, alpha := range []string{plain, mixed, iupac, withU, withBoth} {
		for _, n := range []int{0, 1, 3, 4, 7, 1000, 10007} {
			s := randomSeq(r, n, alpha)
			got, err := BaseCounts(s, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want Counts
			for _, b := range []byte(refClean(s, false)) {
				switch b {
				case 'A':
					want.A++
				case 'C':
					want.C++
				case 'G':
					want.G++
				case 'T', 'U':
					want.T++
				case 'N':
					want.N++
				default:
					want.Other++
				}
			}
			if got != want {
				t.Fatalf("BaseCounts(%q) = %+v, want %+v", s, got, want)
			}
		}
	}
	c, _ := BaseCounts("GCAASWRY--", nil)
	if c.GC() != 0.5 {
		t.Error(c.GC())
	}
	if c, _ := BaseCounts("NNNN", nil); c.GC() != 0 {
		t.Error("all N")
	}
}

func TestReverseComplement(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, alpha := range []string{plain, mixed, iupac, withU} {
		for _, n := range []int{0, 1, 2, 17, 4097} {
			s := randomSeq(r, n, alpha)
			got, err := ReverseComplement(s, nil)
			if err != nil || got != refRevcomp(s) {
				t.Fatalf("ReverseComplement(%q) = %q, %v", s, got, err)
			}
		}
	}
	for in, want := range map[string]string{"ATCG": "CGAT", "acgT": "Acgt", "AC GT\nTT": "AAACGT",
		"RYKMSWBDHVN": "NBDHVWSKMRY", "AUGu": "aCAT", "AC--G": "C--GT", "": ""} {
		if got, _ := ReverseComplement(in, nil); got != want {
			t.Errorf("ReverseComplement(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTranslate(t *testing.T) {
	// Every codon of the alphabet, in both cases.
	for _, x := range []byte(Letters) {
		for _, y := range []byte(Letters) {
			for _, z := range []byte(Letters) {
				codon := string([]byte{x, y, z})
				want := string(refAmino(codon))
				for _, c := range []string{codon, strings.ToLower(codon)} {
					if got, _ := Translate(c, 1, nil); got != want {
						t.Fatalf("Translate(%q) = %q, want %q", c, got, want)
					}
				}
			}
		}
	}
	known := map[string]string{"GGN": "G", "CTN": "L", "TAR": "*", "TRA": "*", "ATN": "X", "MGR": "R",
		"YTR": "L", "ATH": "I", "gcn": "A", "---": "-", "A-G": "X", "ATGNNNTAA": "MX*", "AUG": "M"}
	for in, want := range known {
		if got, _ := Translate(in, 1, nil); got != want {
			t.Errorf("Translate(%q) = %q, want %q", in, got, want)
		}
	}
	s := "ATGGCCATTGTAATGGGCCGCTGAAAGGGTGCCCGATAG"
	for f, want := range map[int]string{1: "MAIVMGR*KGAR*", 2: "WPL*WAAERVPD", 3: "GHCNGPLKGCPI",
		-1: "LSGTLSAAHYNGH", -2: "YRAPFQRPITMA", -3: "IGHPFSGPLQWP"} {
		if got, _ := Translate(s, f, nil); got != want {
			t.Errorf("frame %d: %q, want %q", f, got, want)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, alpha := range []string{plain, mixed, iupac, withU} {
		for n := range 14 {
			for _, m := range []int{n, n + 3000} {
				s := randomSeq(r, m, alpha)
				six, err := SixFrames(s, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i, f := range []int{1, 2, 3, -1, -2, -3} {
					want := refTranslate(s, f)
					got, err := Translate(s, f, nil)
					if err != nil || got != want || six[i] != want {
						t.Fatalf("Translate(%q, %d) = %q / %q, want %q", s, f, got, six[i], want)
					}
				}
			}
		}
	}
}

func TestKmerCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	check := func(s string, k int) {
		t.Helper()
		got, err := KmerCounts(s, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := refKmers(s, k)
		if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("KmerCounts(%.40q..., %d): %d k-mers, want %d; first %v, want %v",
				s, k, len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
		}
	}
	for _, alpha := range []string{plain, mixed, iupac, withU, withBoth} {
		for _, n := range []int{0, 1, 5, 300, 20000} {
			s := randomSeq(r, n, alpha)
			for _, k := range []int{1, 2, 3, 6, 8, 11, 12, 13, 20, 31, 32, 40, n, n + 1} {
				if k >= 1 {
					check(s, k)
				}
			}
		}
	}
	// Dense, sparse and text counting all list k-mers by first occurrence.
	got, _ := KmerCounts("TTGGAACCTTNAA", 2, nil)
	want := []Kmer{{"TT", 2}, {"TG", 1}, {"GG", 1}, {"GA", 1}, {"AA", 2}, {"AC", 1}, {"CC", 1}, {"CT", 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order: %v", got)
	}
	if got, _ := KmerCounts("AC\nGT", 4, nil); !reflect.DeepEqual(got, []Kmer{{"ACGT", 1}}) {
		t.Errorf("white space: %v", got)
	}
	if got, _ := KmerCounts("acgu", 2, nil); !reflect.DeepEqual(got, []Kmer{{"AC", 1}, {"CG", 1}, {"GU", 1}}) {
		t.Errorf("RNA: %v", got)
	}
	if got, _ := KmerCounts("ACGTU", 2, nil); !reflect.DeepEqual(got, []Kmer{{"AC", 1}, {"CG", 1}, {"GT", 1}, {"TU", 1}}) {
		t.Errorf("T and U: %v", got)
	}
}

func TestKmerCountsStop(t *testing.T) {
	defer func(n, b int) { stopInterval, stopBytes = n, b }(stopInterval, stopBytes)
	stopInterval = 1 << 10
	stopBytes = 1 << 30 // the scan first is not stopped: the counting is
	s := randomSeq(rand.New(rand.NewPCG(11, 12)), 256<<10, plain)
	for _, k := range []int{6, 20, 40} { // dense, sparse codes, text
		calls := 0
		_, err := KmerCounts(s, k, func() bool { calls++; return calls == 2 })
		if err != ErrStopped || calls != 2 {
			t.Errorf("k=%d: %v after %d calls", k, err, calls)
		}
	}
}

func benchSeq() string {
	return randomSeq(rand.New(rand.NewPCG(13, 14)), 4<<20, plain)
}

func BenchmarkBaseCounts(b *testing.B) {
	s := benchSeq()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		_, _ = BaseCounts(s, nil)
	}
}

func BenchmarkReverseComplement(b *testing.B) {
	s := benchSeq()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		_, _ = ReverseComplement(s, nil)
	}
}

func BenchmarkSixFrames(b *testing.B) {
	s := benchSeq()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		_, _ = SixFrames(s, nil)
	}
}

func BenchmarkKmerCounts6(b *testing.B) {
	s := benchSeq()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		_, _ = KmerCounts(s, 6, nil)
	}
}

// TestKernelsInPieces: the kernels work in pieces of stopBytes with a call
// of the stop function between them; in small pieces their results are
// the reference's, and a stop ends each with ErrStopped.
func TestKernelsInPieces(t *testing.T) {
	defer func(b int) { stopBytes = b }(stopBytes)
	stopBytes = 7
	r := rand.New(rand.NewPCG(21, 22))
	never := func() bool { return false }
	for _, alpha := range []string{plain, mixed, iupac, withU} {
		for _, n := range []int{0, 1, 5, 7, 8, 100, 4099} {
			s := randomSeq(r, n, alpha)
			for _, keep := range []bool{false, true} {
				if got, err := Clean(s, keep, never); err != nil || got != refClean(s, keep) {
					t.Fatalf("Clean(%q, %v) = %q, %v", s, keep, got, err)
				}
			}
			want, _ := BaseCounts(s, nil)
			if got, err := BaseCounts(s, never); err != nil || got != want {
				t.Fatalf("BaseCounts(%q) = %+v, %v, want %+v", s, got, err, want)
			}
			if got, err := ReverseComplement(s, never); err != nil || got != refRevcomp(s) {
				t.Fatalf("ReverseComplement(%q) = %q, %v", s, got, err)
			}
			six, err := SixFrames(s, never)
			for i, f := range []int{1, 2, 3, -1, -2, -3} {
				if want := refTranslate(s, f); err != nil || six[i] != want {
					t.Fatalf("SixFrames(%q)[%d] = %q, %v, want %q", s, i, six[i], err, want)
				}
			}
		}
	}
	s := randomSeq(r, 1000, mixed)
	for name, run := range map[string]func(stop func() bool) error{
		"Clean":             func(stop func() bool) error { _, err := Clean(s, false, stop); return err },
		"BaseCounts":        func(stop func() bool) error { _, err := BaseCounts(s, stop); return err },
		"ReverseComplement": func(stop func() bool) error { _, err := ReverseComplement(s, stop); return err },
		"Translate":         func(stop func() bool) error { _, err := Translate(s, -1, stop); return err },
		"SixFrames":         func(stop func() bool) error { _, err := SixFrames(s, stop); return err },
		"KmerCounts":        func(stop func() bool) error { _, err := KmerCounts(s, 3, stop); return err },
	} {
		calls := 0
		if err := run(func() bool { calls++; return calls == 3 }); err != ErrStopped || calls != 3 {
			t.Errorf("%s: %v after %d calls", name, err, calls)
		}
	}
}

// TestKmerCountsStopLongK: with a long k every window hashes k bytes, so
// the stop function is called per bytes of k-mers, not only per windows
// (1024 windows of k = 4 Mi ran 0.1 s between two calls).
func TestKmerCountsStopLongK(t *testing.T) {
	const n, k = 1 << 14, 1 << 13
	for _, s := range []string{strings.Repeat("A", n), randomSeq(rand.New(rand.NewPCG(31, 32)), n, plain)} {
		calls := 0
		if _, err := KmerCounts(s, k, func() bool { calls++; return false }); err != nil {
			t.Fatal(err)
		}
		// (n-k+1) windows of k bytes, one call per 64*stopInterval bytes.
		if want := (n - k + 1) * k / (64 * stopInterval); calls < want {
			t.Errorf("%d calls of the stop function, want at least %d", calls, want)
		}
	}
}

// TestKmerCountsLongKMemory: distinct long k-mers are not copied out of
// the sequence when they hold more bytes than it: a random 32 KiB with
// k = 16 Ki has 16 Ki distinct k-mers, 256 MiB if copied (no memory limit
// sees a kernel's Go allocations; a megabyte with k = 512 Ki crashed).
func TestKmerCountsLongKMemory(t *testing.T) {
	const n, k = 32 << 10, 16 << 10
	s := randomSeq(rand.New(rand.NewPCG(41, 42)), n, plain)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := KmerCounts(s, k, nil)
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != n-k+1 {
		t.Fatalf("%d k-mers, %v", len(got), err)
	}
	for i, km := range got {
		if km.Seq != s[i:i+k] || km.Count != 1 {
			t.Fatalf("k-mer %d: %d bytes, count %d", i, len(km.Seq), km.Count)
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("KmerCounts allocated %d MiB for a %d KiB sequence", alloc>>20, n>>10)
	}
	// Short keys are still copied: they do not keep s alive.
	short := strings.Repeat("ACGTTGCA", 1<<12)
	if got, _ := KmerCounts(short, 40, nil); unsafe.StringData(got[0].Seq) == unsafe.StringData(short) {
		t.Error("a short result shares the sequence")
	}
}

// TestKmerCountsRoom: the room function is asked as the count's memory
// doubles, and a false answer ends the count with ErrNoRoom (counting a
// string took 100 to 200 times its size in Go memory no limit saw).
func TestKmerCountsRoom(t *testing.T) {
	s := randomSeq(rand.New(rand.NewPCG(51, 52)), 1<<20, plain)
	for _, k := range []int{8, 20, 40} { // dense, sparse codes, text
		var asked []int64
		_, err := KmerCountsRoom(s, k, nil, func(n int64) bool { asked = append(asked, n); return n < 8<<20 })
		if k == 8 {
			// 64 Ki entries at most: it fits.
			if err != nil {
				t.Errorf("k=%d: %v (asked %v)", k, err, asked)
			}
			continue
		}
		if err != ErrNoRoom || len(asked) < 2 || asked[len(asked)-1] < 8<<20 {
			t.Errorf("k=%d: %v, asked %v", k, err, asked)
		}
		for i := 1; i < len(asked); i++ {
			if asked[i] < 2*asked[i-1] {
				t.Errorf("k=%d: asked %v: not doubling", k, asked)
			}
		}
	}
	if got, err := KmerCountsRoom(s, 20, nil, func(int64) bool { return true }); err != nil || len(got) < 1<<19 {
		t.Errorf("%d k-mers, %v", len(got), err)
	}
}
