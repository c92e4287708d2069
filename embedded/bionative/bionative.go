// Package bionative holds Go kernels for the hot loops of the pure-Lua
// bio_compute module (lua/bio_compute/src/bio_compute.lua): sequence
// cleaning, base counts, reverse complement, translation and k-mer counting.
// Package embedded exposes them to Lua as the module "bio_compute.native",
// which bio_compute.lua uses when it is present; see docs/bio_compute.md.
//
// The kernels work on plain strings and reproduce the Lua module's results
// exactly: the alphabet is the IUPAC nucleotide codes ACGTURYSWKMBDHVN and
// the gap '-' in either case; white space (space, \t, \n, \v, \f, \r, the
// Lua "%s" class) is dropped; any other byte is an *InvalidError naming the
// first such byte and its 1-based position in the string given. Error
// messages as users see them are still built by the Lua module.
package bionative

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// InvalidError reports the first byte of a sequence that is neither a
// sequence letter nor white space.
type InvalidError struct {
	Pos  int  // 1-based byte position in the string given
	Byte byte // the byte found there
}

func (e *InvalidError) Error() string {
	what := fmt.Sprintf("byte %d", e.Byte)
	if e.Byte >= 32 && e.Byte < 127 {
		what = fmt.Sprintf("'%c'", e.Byte)
	}
	return fmt.Sprintf("invalid character %s at position %d", what, e.Pos)
}

// ErrStopped is returned by a kernel when its stop function reported true.
//
// Every kernel takes a stop function (nil: never stop), which it calls
// between pieces of its work of about stopBytes bytes (or stopInterval
// k-mers): the embedded engine runs a sandboxed chunk on its caller's
// goroutine, where nothing else stops a Go call at the call's deadline
// (six_frames of 128 MiB ran 0.5 s past one, reverse_complement 0.15 s).
var ErrStopped = errors.New("stopped")

// Letters is the sequence alphabet (upper case; lower case is accepted too).
const Letters = "ACGTURYSWKMBDHVN-"

// Byte flags, OR-ed over a whole string to classify it in one pass.
const (
	fInvalid = 1 << iota // not a sequence letter, not white space
	fSpace               // white space
	fLower               // a lower-case letter
	fT                   // T or t
	fU                   // U or u
)

var (
	flags    [256]uint8
	upperTab [256]byte // ASCII upper case
	compTab  [256]byte // complement of a letter, case kept; 0 for others
	symIdx   [256]uint8
	compIdx  [256]uint8 // symIdx of the complement
	baseCode [256]uint8 // A C G T/U -> 0..3, white space skipCode, other letters breakCode
	codonAA  [nsym * nsym * nsym]byte
)

const (
	nsym      = len(Letters)
	skipCode  = 254
	breakCode = 255
)

// The standard genetic code (NCBI table 1), codons in TCAG order.
const (
	codeBases = "TCAG"
	codeAmino = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
)

// The bases each IUPAC code stands for (U is read as T).
var expand = map[byte]string{
	'A': "A", 'C': "C", 'G': "G", 'T': "T", 'U': "T",
	'R': "AG", 'Y': "CT", 'S': "CG", 'W': "AT", 'K': "GT", 'M': "AC",
	'B': "CGT", 'D': "AGT", 'H': "ACT", 'V': "ACG", 'N': "ACGT",
}

// Complements: A always to T, U to A (output is DNA).
var complement = map[byte]byte{
	'A': 'T', 'T': 'A', 'U': 'A', 'C': 'G', 'G': 'C',
	'R': 'Y', 'Y': 'R', 'K': 'M', 'M': 'K', 'S': 'S', 'W': 'W',
	'B': 'V', 'V': 'B', 'D': 'H', 'H': 'D', 'N': 'N', '-': '-',
}

func lowerOf(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func init() {
	for i := range 256 {
		b := byte(i)
		flags[i] = fInvalid
		upperTab[i] = b
		if b >= 'a' && b <= 'z' {
			upperTab[i] = b - ('a' - 'A')
		}
		symIdx[i], compIdx[i], baseCode[i] = 255, 255, breakCode
	}
	for _, b := range []byte(" \t\n\v\f\r") {
		flags[b] = fSpace
		baseCode[b] = skipCode
	}
	for i := range nsym {
		up := Letters[i]
		lo := lowerOf(up)
		flags[up] = 0
		if lo != up {
			flags[lo] = fLower
		}
		symIdx[up], symIdx[lo] = uint8(i), uint8(i)
		c := complement[up]
		compTab[up], compTab[lo] = c, lowerOf(c)
	}
	for i := range nsym {
		up := Letters[i]
		ci := uint8(strings.IndexByte(Letters, complement[up]))
		compIdx[up], compIdx[lowerOf(up)] = ci, ci
	}
	flags['T'] |= fT
	flags['t'] |= fT
	flags['U'] |= fU
	flags['u'] |= fU
	for code, b := range []byte("ACGT") {
		baseCode[b], baseCode[lowerOf(b)] = uint8(code), uint8(code)
	}
	baseCode['U'], baseCode['u'] = 3, 3

	standard := map[string]byte{}
	n := 0
	for _, a := range []byte(codeBases) {
		for _, b := range []byte(codeBases) {
			for _, c := range []byte(codeBases) {
				standard[string([]byte{a, b, c})] = codeAmino[n]
				n++
			}
		}
	}
	for i := range nsym {
		for j := range nsym {
			for k := range nsym {
				codonAA[(i*nsym+j)*nsym+k] = resolve([3]byte{Letters[i], Letters[j], Letters[k]}, standard)
			}
		}
	}
}

// resolve translates a codon of upper-case letters: the amino acid every
// reading of its ambiguity codes agrees on, else 'X'; "---" is a gap ('-'),
// any other codon with a gap 'X'.
func resolve(codon [3]byte, standard map[string]byte) byte {
	if codon[0] == '-' || codon[1] == '-' || codon[2] == '-' {
		if codon == [3]byte{'-', '-', '-'} {
			return '-'
		}
		return 'X'
	}
	var aa byte
	for _, x := range []byte(expand[codon[0]]) {
		for _, y := range []byte(expand[codon[1]]) {
			for _, z := range []byte(expand[codon[2]]) {
				a := standard[string([]byte{x, y, z})]
				if aa == 0 {
					aa = a
				} else if a != aa {
					return 'X'
				}
			}
		}
	}
	return aa
}

// scan ORs the flags of every byte of s.
func scan(s string, stop func() bool) (uint8, error) {
	var f uint8
	err := inPieces(len(s), stop, func(start, end int) { f |= scanPiece(s[start:end]) })
	return f, err
}

func scanPiece(s string) uint8 {
	var a, b, c, d uint8
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a |= flags[s[i]]
		b |= flags[s[i+1]]
		c |= flags[s[i+2]]
		d |= flags[s[i+3]]
	}
	for ; i < len(s); i++ {
		a |= flags[s[i]]
	}
	return a | b | c | d
}

// stopBytes is how many bytes a byte loop handles between calls of the
// stop function: ~0.1 ms.
var stopBytes = 64 * stopInterval

// inPieces calls fn on [0, n) in pieces of stopBytes, and stop between
// them: ErrStopped when it reports true.
func inPieces(n int, stop func() bool, fn func(start, end int)) error {
	for start := 0; start < n; start += stopBytes {
		if start > 0 && stop != nil && stop() {
			return ErrStopped
		}
		fn(start, min(start+stopBytes, n))
	}
	return nil
}

// invalidAt returns the error for the first invalid byte of s (which has one).
func invalidAt(s string) error {
	for i := 0; i < len(s); i++ {
		if flags[s[i]]&fInvalid != 0 {
			return &InvalidError{Pos: i + 1, Byte: s[i]}
		}
	}
	panic("bionative: invalidAt on a valid sequence")
}

// toString turns a buffer nothing else references into a string without
// copying it.
func toString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Validate checks s: nil, or an *InvalidError for its first invalid byte.
func Validate(s string) error {
	if f, _ := scan(s, nil); f&fInvalid != 0 {
		return invalidAt(s)
	}
	return nil
}

// Clean returns s without white space, upper-cased unless keepCase (Lua:
// bio_compute.validate). When nothing needs changing it returns s itself.
func Clean(s string, keepCase bool, stop func() bool) (string, error) {
	f, err := scan(s, stop)
	if err != nil {
		return "", err
	}
	if f&fInvalid != 0 {
		return "", invalidAt(s)
	}
	if f&fSpace == 0 && (keepCase || f&fLower == 0) {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	tab := &upperTab
	err = inPieces(len(s), stop, func(start, end int) {
		for i := start; i < end; i++ {
			b := s[i]
			if flags[b]&fSpace != 0 {
				continue
			}
			if !keepCase {
				b = tab[b]
			}
			out = append(out, b)
		}
	})
	if err != nil {
		return "", err
	}
	return toString(out), nil
}

// Counts are base counts as bio_compute.base_counts reports them: T
// includes U, Other counts the other ambiguity codes and gaps; the six add
// up to the length without white space.
type Counts struct {
	A, C, G, T, N, Other int
}

// GC is (G + C) / (A + C + G + T), 0 when that is 0.
func (c Counts) GC() float64 {
	total := c.A + c.C + c.G + c.T
	if total == 0 {
		return 0
	}
	return float64(c.G+c.C) / float64(total)
}

// BaseCounts counts the bases of s (any case, white space ignored).
func BaseCounts(s string, stop func() bool) (Counts, error) {
	// Four histograms, so that runs of one letter do not serialise on one
	// counter.
	var h [4][256]int
	err := inPieces(len(s), stop, func(start, end int) {
		i := start
		for ; i+4 <= end; i += 4 {
			h[0][s[i]]++
			h[1][s[i+1]]++
			h[2][s[i+2]]++
			h[3][s[i+3]]++
		}
		for ; i < end; i++ {
			h[0][s[i]]++
		}
	})
	if err != nil {
		return Counts{}, err
	}
	var cnt [256]int
	spaces := 0
	for b := range 256 {
		n := h[0][b] + h[1][b] + h[2][b] + h[3][b]
		cnt[b] = n
		if n == 0 {
			continue
		}
		switch {
		case flags[b]&fInvalid != 0:
			return Counts{}, invalidAt(s)
		case flags[b]&fSpace != 0:
			spaces += n
		}
	}
	c := Counts{
		A: cnt['A'] + cnt['a'],
		C: cnt['C'] + cnt['c'],
		G: cnt['G'] + cnt['g'],
		T: cnt['T'] + cnt['t'] + cnt['U'] + cnt['u'],
		N: cnt['N'] + cnt['n'],
	}
	c.Other = len(s) - spaces - c.A - c.C - c.G - c.T - c.N
	return c, nil
}

// ReverseComplement returns the IUPAC reverse complement of s, case kept,
// white space dropped, U complemented to A.
func ReverseComplement(s string, stop func() bool) (string, error) {
	f, err := scan(s, stop)
	if err != nil {
		return "", err
	}
	if f&fInvalid != 0 {
		return "", invalidAt(s)
	}
	tab := &compTab
	n := len(s)
	if f&fSpace == 0 {
		out := make([]byte, n)
		err = inPieces(n, stop, func(start, end int) {
			for i := start; i < end; i++ {
				out[n-1-i] = tab[s[i]]
			}
		})
		if err != nil {
			return "", err
		}
		return toString(out), nil
	}
	out := make([]byte, 0, n)
	err = inPieces(n, stop, func(start, end int) { // from the end of s
		for i := n - 1 - start; i >= n-end; i-- {
			if c := tab[s[i]]; c != 0 {
				out = append(out, c)
			}
		}
	})
	if err != nil {
		return "", err
	}
	return toString(out), nil
}

// ValidFrame reports whether frame is 1, 2, 3, -1, -2 or -3.
func ValidFrame(frame int) bool {
	return frame != 0 && frame >= -3 && frame <= 3
}

// Translate translates s (standard genetic code) in frame 1, 2, 3 (from
// base 1, 2, 3) or -1, -2, -3 (the same on the reverse complement). '*' is
// a stop, 'X' an undetermined amino acid, '-' a gap codon; a trailing
// partial codon is ignored. It panics on any other frame.
func Translate(s string, frame int, stop func() bool) (string, error) {
	if !ValidFrame(frame) {
		panic(fmt.Sprintf("bionative.Translate: frame %d", frame))
	}
	c, err := Clean(s, true, stop)
	if err != nil {
		return "", err
	}
	return translateClean(c, frame, stop)
}

// SixFrames translates s in frames 1, 2, 3, -1, -2, -3 (in that order).
func SixFrames(s string, stop func() bool) ([6]string, error) {
	var out [6]string
	c, err := Clean(s, true, stop)
	if err != nil {
		return out, err
	}
	for i, f := range [6]int{1, 2, 3, -1, -2, -3} {
		if out[i], err = translateClean(c, f, stop); err != nil {
			return [6]string{}, err
		}
	}
	return out, nil
}

// translateClean translates a sequence of letters only (any case).
func translateClean(s string, frame int, stop func() bool) (string, error) {
	off := frame - 1
	if frame < 0 {
		off = -frame - 1
	}
	n := len(s)
	if n-off < 3 {
		return "", nil
	}
	codons := (n - off) / 3
	out := make([]byte, codons)
	aa := &codonAA
	err := inPieces(codons, stop, func(start, end int) {
		if frame > 0 {
			idx := &symIdx
			p := off + 3*start
			for j := start; j < end; j++ {
				out[j] = aa[(int(idx[s[p]])*nsym+int(idx[s[p+1]]))*nsym+int(idx[s[p+2]])]
				p += 3
			}
		} else {
			// Codon j of the reverse complement read from the end of s.
			idx := &compIdx
			p := n - 1 - off - 3*start
			for j := start; j < end; j++ {
				out[j] = aa[(int(idx[s[p]])*nsym+int(idx[s[p-1]]))*nsym+int(idx[s[p-2]])]
				p -= 3
			}
		}
	})
	if err != nil {
		return "", err
	}
	return toString(out), nil
}

// Kmer is one distinct k-mer and how many windows hold it.
type Kmer struct {
	Seq   string
	Count int
}

// Dense counting (an array indexed by the 2-bit code of the k-mer) is used
// while the array has at most this many entries or twice the sequence length.
const (
	maxDenseK  = 12
	smallDense = 1 << 12
)

// stopInterval is how many windows KmerCounts counts in a map, or 64 times
// as many bytes in an array, between calls of the stop function: well under
// a millisecond, a few under the race detector on a busy machine (a
// variable for the tests).
var stopInterval = 1 << 10

// KmerCounts counts the k-mers of the upper-cased sequence (white space
// dropped first): every window of k bases of A, C, G, T and U only; windows
// touching another code or a gap are skipped. The k-mers are listed in the
// order of their first occurrence. k must be >= 1. stop, when not nil, is
// called now and then on long inputs; when it returns true KmerCounts gives
// up with ErrStopped.
func KmerCounts(s string, k int, stop func() bool) ([]Kmer, error) {
	return KmerCountsRoom(s, k, stop, nil)
}

// ErrNoRoom is returned by KmerCountsRoom when its room function reported
// false.
var ErrNoRoom = errors.New("not enough memory")

// kmerBytes is about how many bytes of Go memory a distinct k-mer takes
// while it is counted and in the result (map entry, slices, Kmer, key
// spelled out), besides k itself: 8 Mi distinct 20-mers took 1.1 GiB.
const kmerBytes = 128

// KmerCountsRoom is KmerCounts with a room function (nil: no limit), which
// it asks whether the memory its count takes (an estimate in bytes) still
// fits, each time that has doubled since the last time it asked (from
// 1 MiB): no memory limit sees a kernel's Go allocations, and counting
// a string took 100 to 200 times its size. When room reports false
// KmerCountsRoom gives up with ErrNoRoom.
func KmerCountsRoom(s string, k int, stop func() bool, room func(bytes int64) bool) ([]Kmer, error) {
	if k < 1 {
		panic(fmt.Sprintf("bionative.KmerCounts: k = %d", k))
	}
	f, err := scan(s, stop)
	if err != nil {
		return nil, err
	}
	if f&fInvalid != 0 {
		return nil, invalidAt(s)
	}
	if k > len(s) {
		return nil, nil
	}
	if k <= 31 && f&(fT|fU) != fT|fU {
		last := byte('T')
		if f&fU != 0 {
			last = 'U'
		}
		lim := &limits{stop: stop, room: room, next: 1 << 20}
		if k <= maxDenseK && 1<<(2*k) <= max(smallDense, 2*len(s)) {
			return kmersDense(s, k, last, lim)
		}
		return kmersSparse(s, k, last, lim)
	}
	c, err := Clean(s, false, stop)
	if err != nil {
		return nil, err
	}
	return kmersStrings(c, k, &limits{stop: stop, room: room, next: 1 << 20})
}

// limits are a k-mer count's stop and room functions.
type limits struct {
	stop func() bool
	room func(int64) bool
	next int64 // ask room again once the count takes this many bytes
}

// poll calls the stop function, and the room function when the count,
// now taking about bytes, has doubled since it last did.
func (l *limits) poll(bytes int64) error {
	if l.stop != nil && l.stop() {
		return ErrStopped
	}
	return l.fits(bytes)
}

// fits asks the room function whether bytes fit when they have doubled
// since it last did.
func (l *limits) fits(bytes int64) error {
	if l.room == nil || bytes < l.next {
		return nil
	}
	l.next = 2 * bytes
	if !l.room(bytes) {
		return ErrNoRoom
	}
	return nil
}

// forEachWindow calls fn with the 2-bit code of every k-mer window of s.
func forEachWindow(s string, k int, fn func(code uint64) bool) bool {
	mask := uint64(1)<<(2*k) - 1
	var code uint64
	run := 0
	tab := &baseCode
	for i := 0; i < len(s); i++ {
		b := tab[s[i]]
		if b > 3 {
			if b == breakCode {
				run = 0
			}
			continue
		}
		code = (code<<2 | uint64(b)) & mask
		run++
		if run >= k && !fn(code) {
			return false
		}
	}
	return true
}

func kmersDense(s string, k int, last byte, lim *limits) ([]Kmer, error) {
	if err := lim.fits(4 << (2 * k)); err != nil {
		return nil, err
	}
	cnt := make([]uint32, 1<<(2*k))
	var order []uint32
	mask := uint32(1)<<(2*k) - 1
	var code uint32
	run := 0
	tab := &baseCode
	for start := 0; start < len(s); start += 64 * stopInterval {
		if start > 0 {
			if err := lim.poll(4<<(2*k) + int64(len(order))*kmerBytes); err != nil {
				return nil, err
			}
		}
		for _, c := range []byte(s[start:min(len(s), start+64*stopInterval)]) {
			b := tab[c]
			if b > 3 {
				if b == breakCode {
					run = 0
				}
				continue
			}
			code = (code<<2 | uint32(b)) & mask
			if run++; run < k {
				continue
			}
			if cnt[code] == 0 {
				order = append(order, code)
			}
			cnt[code]++
		}
	}
	return decode(k, last, len(order), func(i int) (uint64, int) {
		return uint64(order[i]), int(cnt[order[i]])
	}, lim)
}

func kmersSparse(s string, k int, last byte, lim *limits) ([]Kmer, error) {
	index := map[uint64]int32{}
	var codes []uint64
	var counts []int
	var err error
	n := 0
	forEachWindow(s, k, func(code uint64) bool {
		if n++; n%stopInterval == 0 {
			if err = lim.poll(int64(len(codes)) * kmerBytes); err != nil {
				return false
			}
		}
		if j, ok := index[code]; ok {
			counts[j]++
			return true
		}
		index[code] = int32(len(codes))
		codes = append(codes, code)
		counts = append(counts, 1)
		return true
	})
	if err != nil {
		return nil, err
	}
	return decode(k, last, len(codes), func(i int) (uint64, int) { return codes[i], counts[i] }, lim)
}

// decode spells n codes as k-mers, all in one string.
func decode(k int, last byte, n int, at func(i int) (uint64, int), lim *limits) ([]Kmer, error) {
	if n == 0 {
		return nil, nil
	}
	if err := lim.fits(int64(n) * (kmerBytes + int64(k))); err != nil {
		return nil, err
	}
	letters := [4]byte{'A', 'C', 'G', last}
	buf := make([]byte, n*k)
	out := make([]Kmer, n)
	for i := range n {
		if i%stopInterval == stopInterval-1 && lim.stop != nil && lim.stop() {
			return nil, ErrStopped
		}
		code, c := at(i)
		key := buf[i*k : (i+1)*k]
		for j := k - 1; j >= 0; j-- {
			key[j] = letters[code&3]
			code >>= 2
		}
		out[i].Count = c
	}
	all := toString(buf)
	for i := range out {
		out[i].Seq = all[i*k : (i+1)*k]
	}
	return out, nil
}

// kmersStrings counts k-mers by their text: long k, or T and U both present.
// s is clean and upper case.
func kmersStrings(s string, k int, lim *limits) ([]Kmer, error) {
	index := map[string]int32{}
	var starts, counts []int
	run, windows, work := 0, 0, 0
	for i := 0; i < len(s); i++ {
		if baseCode[s[i]] > 3 {
			run = 0
			continue
		}
		if run++; run < k {
			continue
		}
		// Every window hashes (and on a hit compares) k bytes: poll every
		// stopInterval windows or 64 times as many bytes, whichever first
		// (per window only, k = 4 Mi ran 0.1 s between two polls).
		windows++
		if work += k; windows%stopInterval == 0 || work >= 64*stopInterval {
			work = 0
			if err := lim.poll(int64(len(starts)) * kmerBytes); err != nil {
				return nil, err
			}
		}
		km := s[i+1-k : i+1]
		if j, ok := index[km]; ok {
			counts[j]++
			continue
		}
		index[km] = int32(len(starts))
		starts = append(starts, i+1-k)
		counts = append(counts, 1)
	}
	if len(starts) == 0 {
		return nil, nil
	}
	out := make([]Kmer, len(starts))
	// Keys longer in total than s are substrings of s: copied they took
	// len(starts)*k bytes, which no limit saw (a random megabyte with
	// k = 512 Ki asked Go for 256 GiB at once and crashed the process).
	// Shorter ones are copied into one buffer, so that a few short keys
	// do not keep a long s alive: either way the result keeps at most
	// as many bytes alive as its keys hold.
	if int64(len(starts))*int64(k) > int64(len(s)) {
		for i, p := range starts {
			out[i] = Kmer{Seq: s[p : p+k], Count: counts[i]}
		}
		return out, nil
	}
	buf := make([]byte, 0, len(starts)*k)
	for _, p := range starts {
		buf = append(buf, s[p:p+k]...)
	}
	all := toString(buf)
	for i := range out {
		out[i] = Kmer{Seq: all[i*k : (i+1)*k], Count: counts[i]}
	}
	return out, nil
}
