package embedded

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// strftimeConvs are all C99 conversions; strftimeWant holds what lua5.4
// (glibc, C locale) prints for them, "|"-separated, at fixed UTC instants.
var strftimeConvs = strings.Split("a A b B c C d D e F g G h H I j m M n p r R S t T u U V w W x X y Y z Z %", " ")

var strftimeWant = []struct {
	unix int64
	what string // the instant, for failure messages
	want string
}{
	{0, "epoch",
		"Thu|Thursday|Jan|January|Thu Jan  1 00:00:00 1970|19|01|01/01/70| 1|1970-01-01|70|1970|Jan|00|12|001|01|00|\n|AM|12:00:00 AM|00:00|00|\t|00:00:00|4|00|01|4|00|01/01/70|00:00:00|70|1970|+0000|GMT|%"},
	{1709214307, "leap day 2024-02-29 13:45:07",
		"Thu|Thursday|Feb|February|Thu Feb 29 13:45:07 2024|20|29|02/29/24|29|2024-02-29|24|2024|Feb|13|01|060|02|45|\n|PM|01:45:07 PM|13:45|07|\t|13:45:07|4|08|09|4|09|02/29/24|13:45:07|24|2024|+0000|GMT|%"},
	{1609718399, "2021-01-03 23:59:59, ISO week 53 of 2020",
		"Sun|Sunday|Jan|January|Sun Jan  3 23:59:59 2021|20|03|01/03/21| 3|2021-01-03|20|2020|Jan|23|11|003|01|59|\n|PM|11:59:59 PM|23:59|59|\t|23:59:59|7|01|53|0|00|01/03/21|23:59:59|21|2021|+0000|GMT|%"},
	{1798718400, "2026-12-31 12:00, ISO week 53",
		"Thu|Thursday|Dec|December|Thu Dec 31 12:00:00 2026|20|31|12/31/26|31|2026-12-31|26|2026|Dec|12|12|365|12|00|\n|PM|12:00:00 PM|12:00|00|\t|12:00:00|4|52|53|4|52|12/31/26|12:00:00|26|2026|+0000|GMT|%"},
	{-1, "one second before the epoch",
		"Wed|Wednesday|Dec|December|Wed Dec 31 23:59:59 1969|19|31|12/31/69|31|1969-12-31|70|1970|Dec|23|11|365|12|59|\n|PM|11:59:59 PM|23:59|59|\t|23:59:59|3|52|01|3|52|12/31/69|23:59:59|69|1969|+0000|GMT|%"},
	{-5350377291, "1800-06-15 08:05:09",
		"Sun|Sunday|Jun|June|Sun Jun 15 08:05:09 1800|18|15|06/15/00|15|1800-06-15|00|1800|Jun|08|08|166|06|05|\n|AM|08:05:09 AM|08:05|09|\t|08:05:09|7|24|24|0|23|06/15/00|08:05:09|00|1800|+0000|GMT|%"},
	{-62167219200, "year 0, ISO year -1",
		"Sat|Saturday|Jan|January|Sat Jan  1 00:00:00 0|0|01|01/01/00| 1|0-01-01|99|-1|Jan|00|12|001|01|00|\n|AM|12:00:00 AM|00:00|00|\t|00:00:00|6|00|52|6|00|01/01/00|00:00:00|00|0|+0000|GMT|%"},
	{-62167266000, "year -1 (floored %C and %y)",
		"Fri|Friday|Dec|December|Fri Dec 31 11:00:00 -1|-1|31|12/31/99|31|-1-12-31|99|-1|Dec|11|11|365|12|00|\n|AM|11:00:00 AM|11:00|00|\t|11:00:00|5|52|52|5|52|12/31/99|11:00:00|99|-1|+0000|GMT|%"},
}

func TestStrftime(t *testing.T) {
	format := "%" + strings.Join(strftimeConvs, "|%")
	for _, c := range strftimeWant {
		tm := time.Unix(c.unix, 0).In(gmt)
		got, err := strftime(format, tm)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		gotParts, wantParts := strings.Split(got, "|"), strings.Split(c.want, "|")
		if len(gotParts) != len(wantParts) {
			t.Fatalf("%s: got %q\nwant %q", c.what, got, c.want)
		}
		for i, conv := range strftimeConvs {
			if gotParts[i] != wantParts[i] {
				t.Errorf("%s: %%%s = %q, want %q", c.what, conv, gotParts[i], wantParts[i])
			}
		}
		// In the C locale the E and O modifiers change nothing.
		for _, m := range []string{"Ec", "EC", "Ex", "EX", "Ey", "EY", "Od", "Oe", "OH", "OI", "Om", "OM", "OS", "Ou", "OU", "OV", "Ow", "OW", "Oy"} {
			got, err := strftime("%"+m, tm)
			want, _ := strftime("%"+m[1:], tm)
			if err != nil || got != want {
				t.Errorf("%s: %%%s = %q, %v; want %q", c.what, m, got, err, want)
			}
		}
	}
}

func TestStrftimeLocalZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	for _, c := range []struct {
		unix int64
		want string
	}{
		{0, "Wed Dec 31 19:00:00 1969 EST -0500"},
		{1593604800, "Wed Jul  1 08:00:00 2020 EDT -0400"},
		{-3217862358238, "Sat Jan  1 12:00:00 -100000 LMT -0456"}, // local mean time, -4:56:02
	} {
		got, err := strftime("%c %Z %z", time.Unix(c.unix, 0).In(ny))
		if err != nil || got != c.want {
			t.Errorf("%d: got %q, %v; want %q", c.unix, got, err, c.want)
		}
	}
}

func TestStrftimeErrors(t *testing.T) {
	for format, want := range map[string]string{
		"%Q":        "invalid conversion specifier '%Q'",
		"ab%Qcd":    "invalid conversion specifier '%Qcd'",
		"abc%":      "invalid conversion specifier '%'",
		"%E":        "invalid conversion specifier '%E'",
		"%Ea":       "invalid conversion specifier '%Ea'",
		"%Oz":       "invalid conversion specifier '%Oz'",
		"%s":        "invalid conversion specifier '%s'",
		"%5d":       "invalid conversion specifier '%5d'",
		"%d%Q\x00x": "invalid conversion specifier '%Q'",
	} {
		_, err := strftime(format, time.Unix(0, 0).In(gmt))
		if err == nil || err.Error() != want {
			t.Errorf("%q: got %v, want %s", format, err, want)
		}
	}
}

// newOSDateState is a plain gopher-lua state with our os.date and os.time,
// loc being its local time.
func newOSDateState(loc *time.Location) *lua.LState {
	L := lua.NewState()
	installOSDateIn(L, loc)
	return L
}

func TestInstallOSDate(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	installOSDate(L)
	want := time.Unix(1e9, 0).In(time.Local)
	if err := L.DoString(`t = os.date("*t", 1e9) s = os.date("%Y-%m-%d %H:%M:%S", "1e9") n = os.time(t)`); err != nil {
		t.Fatal(err)
	}
	if s := L.GetGlobal("s").String(); s != want.Format("2006-01-02 15:04:05") {
		t.Errorf("os.date = %s, want %s", s, want)
	}
	if n := L.GetGlobal("n").String(); n != "1000000000" {
		t.Errorf("os.time(os.date('*t', 1e9)) = %s", n)
	}
}

// The differential test runs the same os.date/os.time calls in the real
// interpreter and in gopher-lua with installOSDateIn, in several zones.

// osDateHarness defines T(i, f): it prints case i's results or error.
const osDateHarness = `
local function ser(v)
  if type(v) ~= "table" then return type(v):sub(1, 1) .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. tostring(v[k]) end
  return "{" .. table.concat(keys, ",") .. "}"
end
local function T(i, f)
  local ok, a, b = pcall(f)
  if ok then
    print(i .. " ok " .. ser(a) .. " " .. ser(b))
  else
    print(i .. " E " .. tostring(a))
  end
end
local function TT(tb) local r = os.time(tb) return r, tb end
local function RT(t) local tb = os.date("*t", t) local r = os.time(tb) return r == t or r, tb end
`

// luaLiteral is s as a Lua string literal that Lua 5.1 reads too.
func luaLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := range len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// osDateCases are Lua expressions (of at most two values) to compare with
// lua5.4.
func osDateCases(utc bool) []string {
	var cases []string
	add := func(format string, args ...any) { cases = append(cases, fmt.Sprintf(format, args...)) }

	instants := []int64{
		0, 1, -1, 59, 3599, 43199, 43200, 46800, 86399, 86400 * 40,
		951782400, 1709214307, 1609632000, 1609718399, 1798718400, 1798761599,
		-2208988800, -2208988801, -5350377291, -62135596800, -62167219200, -62167266000,
		253402300799, 253402300800, 1e10, -1e10, -3217862376000,
		1772953199, 1772953200, 1793512799, 1793512800, 1793516400, // New York DST changes
		1775318399, 1775318400, 1791043200, // Lord Howe's half-hour DST changes (2026)
	}
	r := rand.New(rand.NewPCG(5, 1))
	for range 30 {
		instants = append(instants, r.Int64N(2e10)-1e10) // years 1653 to 2286
	}
	all := "%" + strings.Join(strftimeConvs, "|%") + "|%Ec|%EC|%Ex|%EX|%Ey|%EY|%Od|%Oe|%OH|%OI|%Om|%OM|%OS|%Ou|%OU|%OV|%Ow|%OW|%Oy"
	for _, u := range instants {
		add("os.date(%s, %d)", luaLiteral("!"+all), u)
		add("os.date(%s, %d)", luaLiteral(all), u)
		add("os.date('!*t', %d)", u)
		add("os.date('*t', %d)", u)
		add("RT(%d)", u)
	}
	for _, u := range instants[:8] {
		for _, c := range strftimeConvs {
			add("os.date('%%%s', %d)", c, u)
		}
	}
	// Years up to C's limits: glibc prints %Y, %G and %C wrong past
	// 2^31-1, and in local time stops applying DST rules after year
	// 5881580 (its day count overflows).
	// (Times are float64 in gopher-lua: these are exact.)
	for _, u := range []string{"2^40", "-2^40", "2^55", "67767976233532792", "-67768040609740800", "-67768040609740808"} {
		add("os.date('!%%c', %s)", u)
		add("os.date('!*t', %s)", u)
		if utc {
			add("os.date('%%c', %s)", u)
			add("os.date('*t', %s)", u)
		}
	}
	add("os.date('!*t', 67767976233532800)")

	// Arguments.
	for _, a := range []string{`"86400"`, `" 0x10 "`, `"1e5"`, `"-1e5"`, `"+5"`, `"abc"`, `""`, `"inf"`, `"nan"`, `"0x"`, `"1e"`,
		`"--5"`, `true`, `{}`, `0/0`, `1/0`, `-1/0`, `2^63`, `-2^63`, `2^62`, `-2^62`, `1e300`} {
		add("os.date('!%%c', %s)", a)
	}
	for _, f := range []string{"5", "nil", "'*tx'", "' *t'", "'!!*t'", "'!*t!'", "''", "'!'", `"a\0b%d"`, "'%%%%d'"} {
		add("os.date(%s, 86400)", f)
	}
	add("os.date({}, 0)")
	add("os.date(true, 0)")
	add("type(os.date()), type(os.date('!%%c', nil))")
	add("math.abs(os.time() - os.time(os.date('*t'))) <= 1, math.abs(os.time(nil) - os.time()) <= 1")
	for _, f := range []string{"%Q", "!%Qabc", "abc%", "%", "%E", "%Ea", "%O", "%Oz", "%Ez", "%s", "%k", "%l", "%P",
		"%5d", "%-d", "%#c", "%+", "%|", "%Q\x00x", "%d%E"} {
		add("os.date(%s, 0)", luaLiteral(f))
	}

	// os.time.
	for _, tb := range []string{
		"{year=2020,month=1,day=1}", "{year=2020,month=1,day=1,hour=0}", "{year=2020,month=13,day=1}",
		"{year=2020,month=0,day=1}", "{year=2020,month=-1,day=1}", "{year=2020,month=-13,day=1}",
		"{year=2020,month=2,day=30}", "{year=2021,month=2,day=29}", "{year=2020,month=3,day=0}",
		"{year=2020,month=3,day=-1}", "{year=2020,month=1,day=400}", "{year=2020,month=1,day=1,hour=25}",
		"{year=2020,month=1,day=1,hour=-1}", "{year=2020,month=1,day=1,min=-1}", "{year=2020,month=1,day=1,min=1000000}",
		"{year=2020,month=1,day=1,sec=-1}", "{year=2020,month=1,day=1,sec=31622400}", "{year=1900,month=1,day=1}",
		"{year=1800,month=6,day=15,hour=8}", "{year=1,month=1,day=1}", "{year=0,month=1,day=1}", "{year=-1,month=12,day=31}",
		"{year=-100000,month=1,day=1}", "{year=9999,month=12,day=31,hour=23,min=59,sec=59}",
		`{year="2020",month="1",day=" 0x1f "}`, "{year=2020.0,month=1,day=1,hour=3.0}",
		"{year=2020,month=1,day=1,isdst=true}", "{year=2020,month=1,day=1,isdst=false}",
		"{year=2020,month=7,day=1,isdst=true}", "{year=2020,month=7,day=1,isdst=false}",
		"{year=2020,month=7,day=1,isdst=0}", "{year=2020,month=7,day=1,isdst='no'}",
		"{year=2026,month=3,day=8,hour=2,min=30}", "{year=2026,month=3,day=8,hour=2,min=30,isdst=false}",
		"{year=2026,month=3,day=8,hour=2,min=30,isdst=true}", "{year=2026,month=11,day=1,hour=1,min=30,isdst=false}",
		"{year=2026,month=11,day=1,hour=1,min=30,isdst=true}",
		"{year=2026,month=4,day=5,hour=1,min=45,isdst=false}", "{year=2026,month=4,day=5,hour=1,min=45,isdst=true}",
		"{year=2026,month=10,day=4,hour=2,min=15}", "{year=2026,month=10,day=4,hour=2,min=15,isdst=false}",
		"{year=2026,month=10,day=4,hour=2,min=15,isdst=true}",
		"{year=1970,month=1,day=1,hour=0,sec=-1}", "{year=1970,month=1,day=1,hour=0}",
		"{year=2020,month=1e6,day=1}", "{year=2020,month=1,day=1e9}", "{year=2020,month=1,day=1,sec=-2^31}",
		"{year=2020,month=1,day=1,sec=2^31-1}", "{year=2026,month=3,day=8,hour=1,min=59,sec=60}",
		"{year=2026,month=3,day=8,hour=1,min=59,sec=-3600}", "{year=2026,month=3,day=8,hour=3,min=0,sec=-1}",
		"setmetatable({}, {__index = {year=2020,month=5,day=5}})",
		// errors
		"{}", "{year=2020}", "{year=2020,month=1}", "{month=1,day=1}", "{year=2020,month=1,day=1.5}",
		`{year=2020,month=1,day="x"}`, "{year=2020,month=1,day=true}", "{year=2020,month=1,day={}}",
		`{year=2020,month=1,day=1,hour="x"}`, "{year=2020,month=1,day=1,min=0.5}", "{year=2^40,month=1,day=1}",
		"{year=2^70,month=1,day=1}", "{year=2020,month=2^31+1,day=1}", "{year=2020,month=1,day=2^31}",
		"{year=2020,month=1,day=1,sec=-2^31-1}", "{year=-2147481749,month=1,day=1}",
	} {
		add("TT(%s)", tb)
	}
	if utc {
		for _, tb := range []string{"{year=2147485547,month=1,day=1}", "{year=2147485547,month=13,day=1}",
			"{year=-2147481748,month=1,day=1}", "{year=2020,month=2^31,day=1}", "{year=2020,month=1,day=2^31-1}"} {
			add("TT(%s)", tb)
		}
	}
	add("os.time('x')")
	add("os.time(5)")
	add("os.time(true)")
	return cases
}

// osDate51Cases are where we follow Lua 5.1: fractional times truncate.
func osDate51Cases() []string {
	var cases []string
	for _, a := range []string{"1.7", "-1.7", "-0.5", "86399.99", `"1.5"`, `"-86400.5"`} {
		cases = append(cases, fmt.Sprintf("os.date('!%%c', %s)", a))
	}
	return cases
}

// osDateScript is the harness and one T call per case.
func osDateScript(cases []string) string {
	var b strings.Builder
	b.WriteString(osDateHarness)
	for i, c := range cases {
		fmt.Fprintf(&b, "T(%d, function() local a, b = %s return a, b end)\n", i, c)
	}
	return b.String()
}

var (
	osDateWhere = regexp.MustCompile(`^(\d+ E )[^:\n]*:\d+: `)
	osDateFunc  = regexp.MustCompile(`to '(\w+)' \(`)
)

// osDateLines splits output into lines without error positions or quotes
// around function names (gopher-lua writes "to date", Lua "to 'date'").
func osDateLines(out string) []string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, l := range lines {
		l = osDateWhere.ReplaceAllString(l, "$1")
		lines[i] = osDateFunc.ReplaceAllString(l, "to $1 (")
	}
	return lines
}

// compareOSDate runs cases in the interpreter bin with TZ=zone and in
// gopher-lua with zone as local time, and reports the differences.
func compareOSDate(t *testing.T, bin, zone string, cases []string) {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Skipf("no zone %s: %v", zone, err)
	}
	script := osDateScript(cases)
	cmd := exec.Command(bin, "-")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "TZ="+zone)
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}

	L := newOSDateState(loc)
	defer L.Close()
	var got strings.Builder
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		got.WriteString(L.CheckString(1))
		got.WriteByte('\n')
		return 0
	}))
	if err := L.DoString(script); err != nil {
		t.Fatal(err)
	}

	gotLines, wantLines := osDateLines(got.String()), osDateLines(string(want))
	if len(gotLines) != len(wantLines) {
		t.Fatalf("%d result lines, %s printed %d", len(gotLines), bin, len(wantLines))
	}
	bad := 0
	for i := range wantLines {
		if gotLines[i] != wantLines[i] {
			if bad++; bad <= 15 {
				n, _, _ := strings.Cut(wantLines[i], " ")
				c, _ := strconv.Atoi(n)
				t.Errorf("%s\n  got  %q\n  want %q", cases[c], gotLines[i], wantLines[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d calls differ from %s", bad, len(wantLines), bin)
	}
}

func TestOSDateDiff(t *testing.T) {
	bin, err := exec.LookPath("lua5.4")
	if err != nil {
		t.Skip("lua5.4 not on PATH")
	}
	for _, zone := range []string{"UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"} {
		t.Run(zone, func(t *testing.T) {
			t.Parallel()
			compareOSDate(t, bin, zone, osDateCases(zone == "UTC"))
		})
	}
	t.Run("lua5.1", func(t *testing.T) {
		bin, err := exec.LookPath("lua5.1")
		if err != nil {
			t.Skip("lua5.1 not on PATH")
		}
		compareOSDate(t, bin, "America/New_York", osDate51Cases())
	})
}
