package pattern

import "math/bits"

// charSet is a set of bytes, one bit per byte value.
type charSet [4]uint64

func (cs *charSet) has(c byte) bool { return cs[c>>6]&(1<<(c&63)) != 0 }

func (cs *charSet) add(c byte) { cs[c>>6] |= 1 << (c & 63) }

func (cs *charSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		cs.add(byte(c))
	}
}

func (cs *charSet) union(o *charSet) {
	for i := range cs {
		cs[i] |= o[i]
	}
}

func (cs *charSet) invert() {
	for i := range cs {
		cs[i] = ^cs[i]
	}
}

func (cs *charSet) full() bool {
	return cs[0]&cs[1]&cs[2]&cs[3] == ^uint64(0)
}

// single reports the set's only member, if it has exactly one.
func (cs *charSet) single() (byte, bool) {
	n, c := 0, 0
	for i, w := range cs {
		if w != 0 {
			n += bits.OnesCount64(w)
			c = i*64 + bits.TrailingZeros64(w)
		}
	}
	return byte(c), n == 1
}

// byteSets[c] is the set of c alone; anyByte has every byte ('.').
var (
	byteSets [256]charSet
	anyByte  charSet
)

// classSets[cl] is the set %cl matches: for the class letters of the C
// locale (a c d g l p s u w x, and 5.1's z for "\0") the class, for their
// upper-case forms the complement, for any other byte the byte itself.
var classSets [256]charSet

func init() {
	anyByte.invert()
	for c := 0; c < 256; c++ {
		byteSets[c].add(byte(c))
	}
	for cl := 0; cl < 256; cl++ {
		for c := 0; c < 256; c++ {
			if matchClass(byte(c), byte(cl)) {
				classSets[cl].add(byte(c))
			}
		}
	}
}

func matchClass(c, cl byte) bool {
	lower := cl | 0x20
	isLetter := lower >= 'a' && lower <= 'z'
	var res bool
	switch {
	case !isLetter:
		return c == cl
	case lower == 'a':
		res = isAlpha(c)
	case lower == 'c':
		res = c < 32 || c == 127
	case lower == 'd':
		res = isDigit(c)
	case lower == 'g':
		res = c > 32 && c < 127
	case lower == 'l':
		res = c >= 'a' && c <= 'z'
	case lower == 'p':
		res = c > 32 && c < 127 && !isAlpha(c) && !isDigit(c)
	case lower == 's':
		res = c == ' ' || (c >= '\t' && c <= '\r')
	case lower == 'u':
		res = c >= 'A' && c <= 'Z'
	case lower == 'w':
		res = isAlpha(c) || isDigit(c)
	case lower == 'x':
		res = isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f')
	case lower == 'z':
		res = c == 0
	default:
		return c == cl
	}
	if cl != lower { // upper case: the complement
		res = !res
	}
	return res
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
