package embedded

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// os.date and os.time, replacing gopher-lua's (which map strftime partly
// and wrongly, leave yday at 0, ignore isdst, accept date tables without
// day, month or year and refuse numeric strings as times). They do what
// Lua does on glibc: strftime in the C locale, gmtime/localtime and
// mktime, with a *time.Location (time.Local by default) as the TZ database.
//
// Where Lua 5.1 and 5.4 differ, these follow 5.4, except that os.date
// truncates a fractional time toward zero like 5.1's cast to time_t (5.4
// raises "number has no integer representation", which remains the error
// for NaN, ±Inf and times beyond ±2^63). Following 5.4:
//   - an unknown conversion ("%Q", "%Ea", a lone "%" at the end) raises
//     "invalid conversion specifier" (5.1 left it to strftime);
//   - a date or time outside C's range raises "... cannot be represented
//     in this installation", as does an os.time result of -1 (5.1 returned
//     nil);
//   - os.time fields are read in the order year, month, day, hour, min,
//     sec; present ones must be integers ("field 'day' is not an integer";
//     5.1 truncated them or took a non-number as absent) and fit a C int
//     ("field 'year' is out-of-bound");
//   - os.time writes the normalized fields (and yday, wday, isdst) back to
//     its table;
//   - the whole format is used, NULs included (5.1 stopped at a NUL).

// maxTime bounds the times os.date converts before asking time.Time's
// year: beyond about ±6.8e16 seconds the year overflows C's int anyway.
const maxTime = 1 << 59

// gmt is the zone gmtime reports: "!" formats say GMT and +0000.
var gmt = time.FixedZone("GMT", 0)

// installOSDate replaces os.date and os.time in L's os table; local time
// is time.Local's.
func installOSDate(L *lua.LState) { installOSDateIn(L, time.Local) }

// installOSDateIn is installOSDate with loc as the local time zone (tests
// use it rather than assign time.Local, which other goroutines read).
func installOSDateIn(L *lua.LState, loc *time.Location) {
	osT := L.GetGlobal("os").(*lua.LTable)
	osT.RawSetString("date", L.NewFunction(func(L *lua.LState) int { return osDate(L, loc) }))
	osT.RawSetString("time", L.NewFunction(func(L *lua.LState) int { return osTime(L, loc) }))
}

// osDate is os.date([format [, time]]) with loc as local time.
func osDate(L *lua.LState, loc *time.Location) int {
	format := "%c"
	if L.Get(1) != lua.LNil {
		format = argString(L, 1)
	}
	sec := time.Now().Unix()
	if L.Get(2) != lua.LNil {
		sec = argInteger(L, 2) // truncated toward zero, as Lua 5.1's cast to time_t
	}
	if sec < -maxTime || sec > maxTime { // far outside what glibc represents
		L.RaiseError("date result cannot be represented in this installation")
	}
	t := time.Unix(sec, 0)
	if rest, ok := strings.CutPrefix(format, "!"); ok {
		format, t = rest, t.In(gmt)
	} else {
		t = t.In(loc)
	}
	if !yearFitsC(t.Year()) {
		L.RaiseError("date result cannot be represented in this installation")
	}
	if format == "*t" {
		tb := L.CreateTable(0, 9)
		setDateFields(L, tb, t)
		L.Push(tb)
		return 1
	}
	s, err := strftimeBounded(format, t, L)
	if err != nil {
		L.ArgError(1, err.Error())
	}
	L.Push(lua.LString(s))
	return 1
}

// osTime is os.time([table]) with loc as local time.
func osTime(L *lua.LState, loc *time.Location) int {
	if L.Get(1) == lua.LNil {
		L.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tb := L.CheckTable(1)
	year := dateField(L, tb, "year", -1, 1900)
	month := dateField(L, tb, "month", -1, 1)
	day := dateField(L, tb, "day", -1, 0)
	hour := dateField(L, tb, "hour", 12, 0)
	minute := dateField(L, tb, "min", 0, 0)
	sec := dateField(L, tb, "sec", 0, 0)
	isdst := -1
	if v := L.GetField(tb, "isdst"); v != lua.LNil {
		isdst = 0
		if lua.LVAsBool(v) {
			isdst = 1
		}
	}
	t := mktime(year, month, day, hour, minute, sec, isdst, loc)
	if !yearFitsC(t.Year()) {
		L.RaiseError("time result cannot be represented in this installation")
	}
	setDateFields(L, tb, t)
	if t.Unix() == -1 { // mktime's error value, which Lua cannot tell apart
		L.RaiseError("time result cannot be represented in this installation")
	}
	L.Push(lua.LNumber(t.Unix()))
	return 1
}

// setDateFields stores t's broken-down fields in tb (os.date's "*t").
func setDateFields(L *lua.LState, tb *lua.LTable, t time.Time) {
	for _, f := range [...]struct {
		key string
		v   int
	}{
		{"year", t.Year()}, {"month", int(t.Month())}, {"day", t.Day()},
		{"hour", t.Hour()}, {"min", t.Minute()}, {"sec", t.Second()},
		{"yday", t.YearDay()}, {"wday", int(t.Weekday()) + 1},
	} {
		L.SetField(tb, f.key, lua.LNumber(f.v))
	}
	L.SetField(tb, "isdst", lua.LBool(t.IsDST()))
}

// yearFitsC reports whether year fits struct tm's int tm_year (year-1900).
func yearFitsC(year int) bool {
	return year-1900 >= math.MinInt32 && year-1900 <= math.MaxInt32
}

// dateField is Lua 5.4's getfield: field key of tb as an int, def when it
// is absent (an error when def < 0); the value minus delta must fit a C int.
func dateField(L *lua.LState, tb *lua.LTable, key string, def, delta int) int {
	v := L.GetField(tb, key)
	f, ok := toNumber(L, v)
	if !ok || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		if v != lua.LNil {
			L.RaiseError("field '%s' is not an integer", key)
		}
		if def < 0 {
			L.RaiseError("field '%s' missing in date table", key)
		}
		return def
	}
	n := int64(f)
	if n-int64(delta) < math.MinInt32 || n-int64(delta) > math.MaxInt32 {
		L.RaiseError("field '%s' is out-of-bound", key)
	}
	return int(n)
}

// mktime is the C mktime as glibc implements it, with loc as local time.
// The fields are normalized like time.Date's, except that seconds outside
// 0..59 are added as elapsed time once the rest is resolved (which differs
// from wall-clock arithmetic only across a change of UTC offset).
//
// isdst < 0 lets the zone decide. Otherwise (isdst from a present field)
// the wall clock is read with the UTC offset of the nearest instant whose
// DST flag is isdst > 0, or moved by an hour when there is none within
// about seven years: in UTC, isdst = true means an hour earlier. A wall
// clock skipped by a DST change is read past the change unless isdst is
// true. A wall clock that occurs twice, with isdst < 0, gets time.Date's
// reading (glibc's depends on its previous calls).
func mktime(year, month, day, hour, minute, sec, isdst int, loc *time.Location) time.Time {
	s := min(max(sec, 0), 59)
	t := resolveWall(time.Date(year, time.Month(month), day, hour, minute, s, 0, time.UTC).Unix(), isdst, loc)
	if s != sec {
		t = time.Unix(t.Unix()+int64(sec-s), 0).In(loc)
	}
	return t
}

// resolveWall is mktime for wall, the normalized wall clock as seconds
// since the epoch read as UTC.
func resolveWall(wall int64, isdst int, loc *time.Location) time.Time {
	w := time.Unix(wall, 0).UTC()
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, loc)
	if _, off := t.Zone(); t.Unix()+int64(off) != wall {
		t = gapCandidate(t, wall, isdst)
	}
	if isdst < 0 || t.IsDST() == (isdst > 0) {
		return t
	}
	// glibc probes a week apart (shorter than any DST period in the tz
	// database), alternately before and after, up to about 7.2 years away.
	const stride, bound = 601200, 457243200/2 + 601200
	for delta := int64(stride); delta < bound; delta += stride {
		for _, dir := range [...]int64{-1, 1} {
			o := time.Unix(t.Unix()+dir*delta, 0).In(loc)
			if o.IsDST() == (isdst > 0) {
				_, off := o.Zone()
				return time.Unix(wall-int64(off), 0).In(loc)
			}
		}
	}
	if isdst > 0 { // wanted DST, found standard time: an hour earlier
		return t.Add(-time.Hour)
	}
	return t.Add(time.Hour)
}

// gapCandidate picks glibc's reading of a wall clock that a zone
// transition skipped: t is time.Date's reading, wall the wall clock as
// seconds. The other reading uses t's own offset. With isdst < 0 glibc
// prefers the reading in DST; otherwise the one whose DST flag differs from
// the request (mktime's probing then moves it to the requested offset).
func gapCandidate(t time.Time, wall int64, isdst int) time.Time {
	_, off := t.Zone()
	other := time.Unix(wall-int64(off), 0).In(t.Location())
	if t.IsDST() == other.IsDST() {
		return t
	}
	want := true // the DST reading
	if isdst >= 0 {
		want = isdst == 0
	}
	if other.IsDST() == want {
		return other
	}
	return t
}

// badConversion is strftime's error for a conversion outside C99's list;
// it holds the format from that conversion's '%' on.
type badConversion string

func (b badConversion) Error() string {
	s, _, _ := strings.Cut(string(b), "\x00")
	return "invalid conversion specifier '" + s + "'"
}

// strftime formats t as C99 strftime does in the C locale, with glibc's
// renderings where C leaves them open (unpadded %Y, %G and %C; floored
// %C and %y for negative years). Lua 5.4 accepts exactly the C99
// conversions; the E and O modifiers change nothing in the C locale.
func strftime(format string, t time.Time) (string, error) {
	return strftimeBounded(format, t, nil)
}

// strftimeBounded is strftime for os.date: with L, a result over
// maxStringBytes is an error, and the call's limits are polled every few
// thousand conversions (a format of millions of %c runs for seconds) and
// every pollWork bytes of plain text, which is copied a run at a time (a
// byte at a time, a format of 128 MiB without a % took 0.25 s).
func strftimeBounded(format string, t time.Time, L *lua.LState) (string, error) {
	var b []byte
	tick := limitTicker(L)
	tk := workTicker{L: L}
	for i := 0; i < len(format); i++ {
		if L != nil && len(b) > maxStringBytes {
			tooLong(L, "os.date")
		}
		if format[i] != '%' {
			run := format[i:min(len(format), i+pollWork)]
			if j := strings.IndexByte(run, '%'); j >= 0 {
				run = run[:j]
			}
			b = append(b, run...)
			i += len(run) - 1
			tk.add(len(run))
			continue
		}
		conv, n := convAt(format[i+1:])
		if n == 0 {
			return "", badConversion(format[i:])
		}
		b = appendConv(b, conv, t)
		i += n
		tick()
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), nil // b is not written again
}

// convAt returns the conversion at the start of s (the text after a '%')
// and how many bytes it spans, 0 when it is not a C99 conversion.
func convAt(s string) (byte, int) {
	if s == "" {
		return 0, 0
	}
	if strings.IndexByte("aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%", s[0]) >= 0 {
		return s[0], 1
	}
	if len(s) >= 2 {
		switch s[0] {
		case 'E':
			if strings.IndexByte("cCxXyY", s[1]) >= 0 {
				return s[1], 2
			}
		case 'O':
			if strings.IndexByte("deHImMSuUVwWy", s[1]) >= 0 {
				return s[1], 2
			}
		}
	}
	return 0, 0
}

var (
	dayNames = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday",
		"Thursday", "Friday", "Saturday"}
	monthNames = [...]string{"January", "February", "March", "April",
		"May", "June", "July", "August", "September", "October",
		"November", "December"}
)

// appendConv appends one conversion (without its '%' or modifier).
func appendConv(b []byte, conv byte, t time.Time) []byte {
	year, wday, yday := t.Year(), int(t.Weekday()), t.YearDay()-1
	switch conv {
	case 'a':
		return append(b, dayNames[wday][:3]...)
	case 'A':
		return append(b, dayNames[wday]...)
	case 'b', 'h':
		return append(b, monthNames[t.Month()-1][:3]...)
	case 'B':
		return append(b, monthNames[t.Month()-1]...)
	case 'c':
		return appendFormat(b, "%a %b %e %H:%M:%S %Y", t)
	case 'C':
		return strconv.AppendInt(b, int64(floorDiv(year, 100)), 10)
	case 'd':
		return appendPadded(b, t.Day(), 2, '0')
	case 'D', 'x':
		return appendFormat(b, "%m/%d/%y", t)
	case 'e':
		return appendPadded(b, t.Day(), 2, ' ')
	case 'F':
		return appendFormat(b, "%Y-%m-%d", t)
	case 'g':
		y, _ := t.ISOWeek()
		return appendPadded(b, y-100*floorDiv(y, 100), 2, '0')
	case 'G':
		y, _ := t.ISOWeek()
		return strconv.AppendInt(b, int64(y), 10)
	case 'H':
		return appendPadded(b, t.Hour(), 2, '0')
	case 'I':
		return appendPadded(b, (t.Hour()+11)%12+1, 2, '0')
	case 'j':
		return appendPadded(b, yday+1, 3, '0')
	case 'm':
		return appendPadded(b, int(t.Month()), 2, '0')
	case 'M':
		return appendPadded(b, t.Minute(), 2, '0')
	case 'n':
		return append(b, '\n')
	case 'p':
		if t.Hour() < 12 {
			return append(b, "AM"...)
		}
		return append(b, "PM"...)
	case 'r':
		return appendFormat(b, "%I:%M:%S %p", t)
	case 'R':
		return appendFormat(b, "%H:%M", t)
	case 'S':
		return appendPadded(b, t.Second(), 2, '0')
	case 't':
		return append(b, '\t')
	case 'T', 'X':
		return appendFormat(b, "%H:%M:%S", t)
	case 'u':
		return appendPadded(b, (wday+6)%7+1, 1, '0')
	case 'U': // weeks starting on Sunday; days before the first are week 0
		return appendPadded(b, (yday+7-wday)/7, 2, '0')
	case 'V':
		_, w := t.ISOWeek()
		return appendPadded(b, w, 2, '0')
	case 'w':
		return appendPadded(b, wday, 1, '0')
	case 'W': // weeks starting on Monday
		return appendPadded(b, (yday+7-(wday+6)%7)/7, 2, '0')
	case 'y':
		return appendPadded(b, year-100*floorDiv(year, 100), 2, '0')
	case 'Y':
		return strconv.AppendInt(b, int64(year), 10)
	case 'z':
		_, off := t.Zone()
		sign := byte('+')
		if off < 0 {
			sign, off = '-', -off
		}
		off /= 60
		return appendPadded(append(b, sign), off/60*100+off%60, 4, '0')
	case 'Z':
		name, _ := t.Zone()
		return append(b, name...)
	}
	return append(b, '%') // '%%'
}

// appendFormat appends t formatted by a format known to be valid.
func appendFormat(b []byte, format string, t time.Time) []byte {
	s, _ := strftime(format, t)
	return append(b, s...)
}

// appendPadded appends the non-negative n padded with pad to width.
func appendPadded(b []byte, n, width int, pad byte) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(n), 10)
	for i := len(s); i < width; i++ {
		b = append(b, pad)
	}
	return append(b, s...)
}

// floorDiv is a/b rounded toward negative infinity (b > 0).
func floorDiv(a, b int) int {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
