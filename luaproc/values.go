package luaproc

import (
	"bytes"
	"math"
	"strconv"

	"libbioxen/core"
)

// DecodeValues parses the payload of an R frame (the driver's value
// serialization, docs/protocol.md) into enc, which must be fresh from
// core.NewValueEncoder. Tables nested deeper than maxDepth become an
// opaque "<depth limit>" marker; when enc fills up, or the driver cut the
// values at its size budget, decoding stops and enc.Finish places the
// "<size limit>" marker. The caller calls enc.Finish afterwards. A
// malformed payload is a *ProtocolError.
func DecodeValues(payload []byte, enc *core.ValueEncoder, maxDepth int) error {
	d := valueDecoder{p: payload, enc: enc, maxDepth: maxDepth}
	n, err := d.count(';')
	if err != nil {
		return err
	}
	for k := int64(0); k < n; k++ {
		stop, err := d.cut(true, atTop)
		if err != nil || stop {
			return err
		}
		if err := d.item(1, true); err != nil || d.stop {
			return err
		}
	}
	if d.i != len(d.p) {
		return protoErr("%d stray bytes after the values", len(d.p)-d.i)
	}
	return nil
}

type valueDecoder struct {
	p        []byte
	i        int
	enc      *core.ValueEncoder
	maxDepth int
	stop     bool // decoding ended early (size limit)
}

// Bounds of an opaque value's type name and text (the driver's put_opaque
// clips the text at 1024 bytes).
const (
	maxOpaqueType = 64
	maxOpaqueText = 1024
)

// maxSkipDepth bounds nesting in a subtree skipped past the depth limit,
// so a broken driver cannot make the decoder recurse without end.
const maxSkipDepth = 1000

func (d *valueDecoder) peek() byte {
	if d.i < len(d.p) {
		return d.p[d.i]
	}
	return 0
}

// count reads a non-negative decimal ended by term.
func (d *valueDecoder) count(term byte) (int64, error) {
	j := bytes.IndexByte(d.p[d.i:], term)
	if j < 0 {
		return 0, protoErr("bad value encoding at byte %d", d.i)
	}
	v, err := parseInt(d.p[d.i : d.i+j])
	if err != nil || v < 0 {
		return 0, protoErr("bad count in value encoding at byte %d", d.i)
	}
	d.i += j + 1
	return v, nil
}

// field reads bytes up to term (exclusive) and skips term.
func (d *valueDecoder) field(term byte) ([]byte, error) {
	j := bytes.IndexByte(d.p[d.i:], term)
	if j < 0 {
		return nil, protoErr("bad value encoding at byte %d", d.i)
	}
	b := d.p[d.i : d.i+j]
	d.i += j + 1
	return b, nil
}

// sized reads "<len>:<bytes>".
func (d *valueDecoder) sized() ([]byte, error) {
	n, err := d.count(':')
	if err != nil {
		return nil, err
	}
	if n > int64(len(d.p)-d.i) {
		return nil, protoErr("value of %d bytes runs past the payload", n)
	}
	b := d.p[d.i : d.i+int(n)]
	d.i += int(n)
	return b, nil
}

// item decodes one value at table nesting depth (1 for a returned value);
// emit false skips it (a subtree past the depth limit).
func (d *valueDecoder) item(depth int, emit bool) error {
	if d.i >= len(d.p) {
		return protoErr("value encoding ends early")
	}
	tag := d.p[d.i]
	d.i++
	enc := d.enc
	switch tag {
	case 'n':
		if emit {
			enc.Nil()
		}
	case 't', 'f':
		if emit {
			enc.Bool(tag == 't')
		}
	case 'i':
		b, err := d.field(';')
		if err != nil {
			return err
		}
		v, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return protoErr("bad integer %q", clip(b))
		}
		if emit {
			enc.Int(v)
		}
	case 'd':
		b, err := d.field(';')
		if err != nil {
			return err
		}
		var f float64
		switch string(b) {
		case "nan", "-nan":
			f = math.NaN()
		case "inf":
			f = math.Inf(1)
		case "-inf":
			f = math.Inf(-1)
		default:
			f, err = strconv.ParseFloat(string(b), 64)
			if err != nil {
				return protoErr("bad number %q", clip(b))
			}
		}
		if emit {
			enc.Number(f)
		}
	case 's':
		b, err := d.sized()
		if err != nil {
			return err
		}
		if emit {
			enc.String(b)
		}
	case 'o':
		b, err := d.sized()
		if err != nil {
			return err
		}
		typ, text, _ := bytes.Cut(b, []byte{' '})
		// The driver sends at most maxOpaqueText bytes of text; a remote
		// one may send 64 MiB, which would go into the values whole (up to
		// six JSON bytes a byte) past their size limit.
		typ, text = typ[:min(len(typ), maxOpaqueType)], text[:min(len(text), maxOpaqueText)]
		if emit {
			enc.Opaque(string(typ), string(text))
		}
	case 'L', 'M':
		n, err := d.count(';')
		if err != nil {
			return err
		}
		if depth > d.maxDepth+maxSkipDepth {
			return protoErr("values nested deeper than %d tables", depth)
		}
		if emit && depth > d.maxDepth {
			enc.Opaque("table", "<depth limit>")
			emit = false
		}
		if tag == 'L' {
			return d.list(n, depth, emit)
		}
		return d.table(n, depth, emit)
	case 'z':
		return protoErr("misplaced size-limit mark at byte %d", d.i-1)
	default:
		return protoErr("bad value tag %q at byte %d", tag, d.i-1)
	}
	return nil
}

// Where a cut happens.
const (
	atTop  = iota // between returned values: enc.Finish places the marker
	inList        // between list items: a marker item stands there
	inMap         // between map pairs: no marker fits
)

// cut reports whether decoding stops before the next item: the driver cut
// the values there ('z') or enc is full. It sets d.stop, consumes a 'z'
// and writes the "<size limit>" marker where one fits.
func (d *valueDecoder) cut(emit bool, where int) (bool, error) {
	z := d.peek() == 'z'
	if z && !emit {
		return false, protoErr("size-limit mark in a skipped table")
	}
	if !z && !(emit && d.enc.Full()) {
		return false, nil
	}
	if z {
		d.i++
	}
	d.stop = true
	if where == inList || (where == atTop && !d.enc.Full()) {
		d.enc.Opaque("nil", "<size limit>")
	}
	return true, nil
}

// On a stop every open container is closed on the way out, so enc stays
// well formed; enc.Finish then adds its own marker when enc is full.

func (d *valueDecoder) list(n int64, depth int, emit bool) error {
	if emit {
		d.enc.BeginList()
	}
	for k := int64(0); k < n; k++ {
		stop, err := d.cut(emit, inList)
		if err != nil {
			return err
		}
		if !stop {
			if err := d.item(depth+1, emit); err != nil {
				return err
			}
		}
		if d.stop {
			break
		}
	}
	if emit {
		d.enc.End()
	}
	return nil
}

func (d *valueDecoder) table(n int64, depth int, emit bool) error {
	if emit {
		d.enc.BeginMap()
	}
	for k := int64(0); k < n && !d.stop; k++ {
		stop, err := d.cut(emit, inMap)
		if err != nil {
			return err
		}
		if stop {
			break
		}
		if emit {
			d.enc.BeginPair()
		}
		if err := d.item(depth+1, emit); err != nil {
			return err
		}
		if d.stop {
			// The key is complete; give it a value.
			d.enc.Opaque("nil", "<size limit>")
		} else {
			// A cut before the value puts the marker in its place.
			stop, err := d.cut(emit, inList)
			if err != nil {
				return err
			}
			if !stop {
				if err := d.item(depth+1, emit); err != nil {
					return err
				}
			}
		}
		if emit {
			d.enc.End()
		}
	}
	if emit {
		d.enc.End()
	}
	return nil
}
