package sim

import (
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// NullRef is XAPI's null reference.
const NullRef = "OpaqueRef:NULL"

// xerr is an XAPI failure: ErrorDescription = [code, params...].
type xerr []string

func (e xerr) Error() string { return strings.Join(e, " ") }

func fail(code string, params ...string) error { return xerr(append([]string{code}, params...)) }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func newRef() string { return "OpaqueRef:" + newUUID() }

// record is one object's fields. Values are string, bool, int64, float64,
// time.Time, []string (sets of refs or strings) or map[string]string.
type record map[string]any

func (r record) clone() record {
	out := make(record, len(r))
	for k, v := range r {
		switch t := v.(type) {
		case []string:
			out[k] = slices.Clone(t)
		case map[string]string:
			out[k] = maps.Clone(t)
		default:
			out[k] = v
		}
	}
	return out
}

func (r record) str(k string) string   { s, _ := r[k].(string); return s }
func (r record) flag(k string) bool    { b, _ := r[k].(bool); return b }
func (r record) set(k string) []string { s, _ := r[k].([]string); return s }
func (r record) smap(k string) map[string]string {
	m, _ := r[k].(map[string]string)
	if m == nil {
		m = map[string]string{}
		r[k] = m
	}
	return m
}

type object struct {
	class    string
	ref      string
	rec      record
	created  uint64
	modified uint64
}

type deletion struct {
	gen     uint64
	created uint64
	class   string
	ref     string
}

// db is the simulator's object store with XAPI-style event generations.
type db struct {
	mu      sync.Mutex
	objs    map[string]*object            // ref → object
	byClass map[string]map[string]*object // class → ref → object
	gen     uint64
	dels    []deletion
	changed chan struct{} // closed and replaced at every change
}

func newDB() *db {
	return &db{objs: map[string]*object{}, byClass: map[string]map[string]*object{}, changed: make(chan struct{})}
}

// bump must be called with mu held after every change.
func (d *db) bump() uint64 {
	d.gen++
	close(d.changed)
	d.changed = make(chan struct{})
	return d.gen
}

// create adds an object; mu held.
func (d *db) create(class string, rec record) string {
	ref := newRef()
	if rec.str("uuid") == "" {
		rec["uuid"] = newUUID()
	}
	g := d.bump()
	o := &object{class: class, ref: ref, rec: rec, created: g, modified: g}
	d.objs[ref] = o
	if d.byClass[class] == nil {
		d.byClass[class] = map[string]*object{}
	}
	d.byClass[class][ref] = o
	return ref
}

// get looks an object up; mu held. A missing ref is HANDLE_INVALID.
func (d *db) get(class, ref string) (*object, error) {
	o := d.objs[ref]
	if o == nil || o.class != class {
		return nil, fail("HANDLE_INVALID", class, ref)
	}
	return o, nil
}

// touch marks an object modified; mu held.
func (d *db) touch(o *object) { o.modified = d.bump() }

// remove deletes an object; mu held.
func (d *db) remove(o *object) {
	if d.objs[o.ref] != o {
		return
	}
	delete(d.objs, o.ref)
	delete(d.byClass[o.class], o.ref)
	g := d.bump()
	d.dels = append(d.dels, deletion{gen: g, created: o.created, class: o.class, ref: o.ref})
	if len(d.dels) > 100000 {
		d.dels = slices.Clone(d.dels[len(d.dels)-50000:])
	}
}

// all returns the objects of a class sorted by creation; mu held.
func (d *db) all(class string) []*object {
	out := make([]*object, 0, len(d.byClass[class]))
	for _, o := range d.byClass[class] {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].created < out[j].created })
	return out
}

// addToSet / removeFromSet maintain reverse-reference sets; mu held.
func (d *db) addToSet(class, ref, field, value string) {
	if o := d.objs[ref]; o != nil && o.class == class {
		if !slices.Contains(o.rec.set(field), value) {
			o.rec[field] = append(slices.Clone(o.rec.set(field)), value)
			d.touch(o)
		}
	}
}

func (d *db) removeFromSet(class, ref, field, value string) {
	if o := d.objs[ref]; o != nil && o.class == class {
		s := o.rec.set(field)
		if i := slices.Index(s, value); i >= 0 {
			o.rec[field] = slices.Delete(slices.Clone(s), i, i+1)
			d.touch(o)
		}
	}
}

// eventToken formats a generation as an event.from token.
func eventToken(gen uint64) string { return fmt.Sprintf("%020d,%020d", gen, 0) }

func parseToken(tok string) (uint64, bool) {
	if tok == "" {
		return 0, true
	}
	a, _, ok := strings.Cut(tok, ",")
	if !ok {
		return 0, false
	}
	var g uint64
	if _, err := fmt.Sscanf(a, "%d", &g); err != nil || len(strings.TrimLeft(a, "0123456789")) != 0 {
		return 0, false
	}
	return g, true
}

type classFilter struct {
	all     bool
	classes map[string]bool   // lowercase class names
	objects map[string]string // ref → lowercase class
}

func newClassFilter(classes []string) classFilter {
	f := classFilter{classes: map[string]bool{}, objects: map[string]string{}}
	for _, c := range classes {
		c = strings.TrimSpace(c)
		if c == "*" {
			f.all = true
			continue
		}
		if cls, ref, ok := strings.Cut(c, "/"); ok {
			f.objects[ref] = strings.ToLower(cls)
			continue
		}
		f.classes[strings.ToLower(c)] = true
	}
	return f
}

func (f classFilter) match(class, ref string) bool {
	lc := strings.ToLower(class)
	if f.all || f.classes[lc] {
		return true
	}
	c, ok := f.objects[ref]
	return ok && c == lc
}

// eventsSince collects the events after generation `since`; mu held.
// since == 0 with fromStart reports every live object as "add".
func (d *db) eventsSince(f classFilter, since uint64) []map[string]any {
	type ev struct {
		gen uint64
		m   map[string]any
	}
	var evs []ev
	now := time.Now()
	ts := fmt.Sprintf("%d.%03d", now.Unix(), now.Nanosecond()/1e6)
	for _, o := range d.objs {
		if o.class == "session" || o.modified <= since || !f.match(o.class, o.ref) {
			continue
		}
		op := "mod"
		if o.created > since {
			op = "add"
		}
		evs = append(evs, ev{o.modified, map[string]any{
			"id": fmt.Sprint(o.modified), "timestamp": ts, "class": strings.ToLower(o.class),
			"operation": op, "ref": o.ref, "snapshot": o.rec.clone(),
		}})
	}
	for _, dl := range d.dels {
		// An object created after the token and deleted since gives no
		// event (xapi_event.ml collect_events prepend_deleted: created <=
		// last_generation).
		if since == 0 || dl.gen <= since || dl.created > since || !f.match(dl.class, dl.ref) {
			continue
		}
		evs = append(evs, ev{dl.gen, map[string]any{
			"id": fmt.Sprint(dl.gen), "timestamp": ts, "class": strings.ToLower(dl.class),
			"operation": "del", "ref": dl.ref,
		}})
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].gen < evs[j].gen })
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		out[i] = e.m
	}
	return out
}

func (d *db) refCounts() map[string]string {
	out := map[string]string{}
	for c, m := range d.byClass {
		if c == "session" {
			continue
		}
		out[strings.ToLower(c)] = fmt.Sprint(len(m))
	}
	return out
}
