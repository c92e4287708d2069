-- Tests for seq_utils. Plain Lua, assert only; exits 1 on any failure.
--
--   lua5.4 lua/seq_utils/test_seq_utils.lua      (also lua5.1, luajit)
--   go test ./lua/...                            (the embedded gopher-lua engine)
--
-- seq_utils and bio_compute are found relative to this file.

local function script_dir()
	local src = debug and debug.getinfo and debug.getinfo(1, "S").source
	if type(src) ~= "string" or src == "" or string.sub(src, 1, 1) == "=" then
		src = arg and arg[0] or ""
	end
	if string.sub(src, 1, 1) == "@" then
		src = string.sub(src, 2)
	end
	return string.match(src, "^(.*)[/\\]") or "."
end

local DIR = script_dir()
package.path = DIR .. "/src/?.lua;" .. DIR .. "/../bio_compute/src/?.lua;" .. package.path
package.loaded.seq_utils, package.loaded.bio_compute = nil, nil
seq_utils, bio_compute = nil, nil -- luacheck: ignore (checks that require sets the globals)

-- Counters live in a table: see test_bio_compute.lua (gopher-lua upvalues).
local stats = { passed = 0, failed = 0 }
local function test(name, fn)
	local ok, err = pcall(fn)
	if ok then
		stats.passed = stats.passed + 1
	else
		stats.failed = stats.failed + 1
		print("FAIL " .. name .. ": " .. tostring(err))
	end
end

local function raises(fn, ...)
	local ok, err = pcall(fn, ...)
	assert(not ok, "expected an error")
	return tostring(err)
end

local function has(s, part)
	return string.find(s, part, 1, true) ~= nil
end

local function eq(a, b, what)
	assert(a == b, (what or "value") .. ": expected " .. tostring(b) .. ", got " .. tostring(a))
end

local function near(a, b, what)
	assert(type(a) == "number" and math.abs(a - b) < 1e-9, (what or "value") .. ": expected " .. tostring(b) ..
		", got " .. tostring(a))
end

local seed = 4242
local function rand(n)
	seed = (seed * 16807) % 2147483647
	return seed % n + 1
end
local function random_seq(len, alphabet)
	local t = {}
	for i = 1, len do
		local k = rand(#alphabet)
		t[i] = string.sub(alphabet, k, k)
	end
	return table.concat(t)
end

local su = require("seq_utils")

test("require sets the globals and loads bio_compute", function()
	assert(type(su) == "table")
	assert(rawequal(seq_utils, su), "global seq_utils")
	assert(type(bio_compute) == "table" and rawequal(package.loaded.bio_compute, bio_compute), "bio_compute loaded")
	eq(su.version, "1.0.0")
	for _, f in ipairs({ "parse_fasta", "format_fasta", "read_fasta", "write_fasta", "gc_skew", "stats" }) do
		assert(type(su[f]) == "function", f)
	end
end)

---------------------------------------------------------------------------
-- parse_fasta
---------------------------------------------------------------------------

test("parse_fasta: records, ids and descriptions", function()
	local recs = su.parse_fasta(">seq1 Homo sapiens chr1\nACGT\nacgt\n>seq2\nGGCC\n>seq3  spaced   words \nTT\n")
	eq(#recs, 3, "count")
	eq(recs[1].id, "seq1") eq(recs[1].description, "Homo sapiens chr1") eq(recs[1].sequence, "ACGTacgt", "case kept")
	eq(recs[2].id, "seq2") eq(recs[2].description, "") eq(recs[2].sequence, "GGCC")
	eq(recs[3].id, "seq3") eq(recs[3].description, "spaced   words") eq(recs[3].sequence, "TT")
end)

test("parse_fasta: line ends, blank lines, comments, white space", function()
	local recs = su.parse_fasta("\n\n>a desc\r\nAC GT\r\n\r\n;comment\r\nTT\t\r\n>b\r\nGG")
	eq(#recs, 2)
	eq(recs[1].id, "a") eq(recs[1].description, "desc") eq(recs[1].sequence, "ACGTTT")
	eq(recs[2].sequence, "GG", "last line without a newline")
	eq(#su.parse_fasta(""), 0, "empty text")
	eq(#su.parse_fasta("\n \n;only a comment\n"), 0, "nothing but blanks and comments")
	recs = su.parse_fasta(">\n>empty\n>x\nA\n")
	eq(#recs, 3)
	eq(recs[1].id, "") eq(recs[1].sequence, "")
	eq(recs[2].id, "empty") eq(recs[2].sequence, "")
	eq(recs[3].sequence, "A")
end)

test("parse_fasta: proteins pass without validation", function()
	local recs = su.parse_fasta(">sp|P69905|HBA_HUMAN Hemoglobin\nMVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF\nDLSH*\n")
	eq(recs[1].id, "sp|P69905|HBA_HUMAN")
	eq(recs[1].sequence, "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSH*")
end)

test("parse_fasta: validate option", function()
	local recs = su.parse_fasta(">a\nacgtn\nRY\n", { validate = true })
	eq(recs[1].sequence, "ACGTNRY", "upper-cased")
	local msg = raises(su.parse_fasta, ">ok\nACGT\n>bad one\nACXT\n", { validate = true })
	assert(has(msg, "seq_utils.parse_fasta: record 2 (bad): bio_compute.validate: invalid character 'X' at position 3"),
		msg)
end)

test("parse_fasta: errors", function()
	local msg = raises(su.parse_fasta, "ACGT\n>a\nAC\n")
	assert(has(msg, "seq_utils.parse_fasta: line 1: sequence data before the first '>' header"), msg)
	msg = raises(su.parse_fasta, "\n\nNNNN\n")
	assert(has(msg, "line 3"), msg)
	msg = raises(su.parse_fasta, nil)
	assert(has(msg, "seq_utils.parse_fasta: text must be a string, got nil"), msg)
	msg = raises(su.parse_fasta, ">a\nA\n", "validate")
	assert(has(msg, "options must be a table, got string"), msg)
	local ok, err = pcall(function()
		su.parse_fasta(42)
	end)
	assert(not ok and string.find(err, "test_seq_utils%.lua:%d+: seq_utils%.parse_fasta"), "error at the caller: " ..
		tostring(err))
end)

test("parse_fasta: long single-line sequence", function()
	-- Over a million characters on one line: no pattern may repeat over it
	-- (gopher-lua's matcher gives up past a million repetitions).
	local s = string.rep("ACGTTGCA", 150000)
	local recs = su.parse_fasta(">chr\n" .. s .. "\n")
	eq(recs[1].sequence, s)
	local lines = {}
	for i = 1, #s, 70 do
		lines[#lines + 1] = string.sub(s, i, i + 69)
	end
	recs = su.parse_fasta(">chr wrapped\r\n" .. table.concat(lines, "\r\n") .. "\r\n")
	eq(recs[1].sequence, s, "70-column CRLF")
end)

---------------------------------------------------------------------------
-- format_fasta, read_fasta, write_fasta
---------------------------------------------------------------------------

test("format_fasta", function()
	eq(su.format_fasta({ { id = "a", description = "x y", sequence = "ACGTACGT" } }, 3), ">a x y\nACG\nTAC\nGT\n")
	eq(su.format_fasta({ id = "one", sequence = "AC" }), ">one\nAC\n", "a single record")
	eq(su.format_fasta({ { id = "e", sequence = "" } }), ">e\n", "empty sequence")
	eq(su.format_fasta({}), "", "no records")
	eq(su.format_fasta({ { id = "a", sequence = "ACGT" } }, 0), ">a\nACGT\n", "width 0")
	eq(su.format_fasta({ { id = "a", sequence = "ACGT" } }, 4), ">a\nACGT\n", "exact width")
	local long = random_seq(130, "ACGT")
	eq(su.format_fasta({ { id = "l", sequence = long } }),
		">l\n" .. string.sub(long, 1, 60) .. "\n" .. string.sub(long, 61, 120) .. "\n" .. string.sub(long, 121) .. "\n",
		"default width 60")
end)

test("format_fasta: errors", function()
	assert(has(raises(su.format_fasta, nil), "seq_utils.format_fasta: records must be a table, got nil"))
	assert(has(raises(su.format_fasta, { { sequence = "A" } }), "record 1: id must be a string"))
	assert(has(raises(su.format_fasta, { { id = "a\nb", sequence = "A" } }), "without line breaks"))
	assert(has(raises(su.format_fasta, { { id = "a" } }), "record 1: sequence must be a string, got nil"))
	assert(has(raises(su.format_fasta, { { id = "a", sequence = "A" }, 5 }), "record 2 must be a table"))
	assert(has(raises(su.format_fasta, { { id = "a", sequence = "A" } }, -1), "width must be a whole number"))
	assert(has(raises(su.format_fasta, { { id = "a", sequence = "A" } }, 2.5), "width must be a whole number"))
end)

test("parse_fasta and format_fasta round trip", function()
	local recs = {}
	for i = 1, 20 do
		recs[i] = { id = "r" .. i, description = (i % 3 == 0) and "" or ("desc " .. i), sequence = random_seq(i * 37, "ACGTN") }
	end
	for _, width in ipairs({ 0, 1, 7, 60, 80 }) do
		local back = su.parse_fasta(su.format_fasta(recs, width))
		eq(#back, #recs)
		for i, r in ipairs(recs) do
			eq(back[i].id, r.id) eq(back[i].description, r.description) eq(back[i].sequence, r.sequence)
		end
	end
end)

test("read_fasta and write_fasta", function()
	if not (os.tmpname and io.open) then
		print("  (read_fasta/write_fasta file test skipped: no os.tmpname or io.open here)")
		return
	end
	local path = os.tmpname()
	local recs = { { id = "x", description = "file test", sequence = "ACGTACGTAC" }, { id = "y", sequence = "GG" } }
	eq(su.write_fasta(path, recs, 4), true)
	local f = assert(io.open(path, "rb"))
	local text = f:read("*a")
	f:close()
	eq(text, ">x file test\nACGT\nACGT\nAC\n>y\nGG\n")
	local back = su.read_fasta(path, { validate = true })
	eq(#back, 2) eq(back[1].sequence, "ACGTACGTAC") eq(back[2].id, "y")
	local bad = assert(io.open(path, "wb"))
	bad:write("oops\n>a\nAC\n")
	bad:close()
	local msg = raises(su.read_fasta, path)
	assert(has(msg, "line 1: sequence data before") and has(msg, path), msg)
	os.remove(path)
	msg = raises(su.read_fasta, path)
	assert(has(msg, "seq_utils.read_fasta:"), msg)
	assert(has(raises(su.read_fasta, nil), "path must be a string, got nil"))
	assert(has(raises(su.write_fasta, nil, recs), "path must be a string, got nil"))
end)

---------------------------------------------------------------------------
-- gc_skew
---------------------------------------------------------------------------

local function ref_skew(s, window, step)
	s = string.upper(s)
	local out, cum = {}, 0
	local start = 1
	while start + window - 1 <= #s do
		local g, c = 0, 0
		for i = start, start + window - 1 do
			local ch = string.sub(s, i, i)
			if ch == "G" then
				g = g + 1
			elseif ch == "C" then
				c = c + 1
			end
		end
		local skew = (g + c > 0) and (g - c) / (g + c) or 0
		cum = cum + skew
		out[#out + 1] = { start = start, stop = start + window - 1, g = g, c = c, skew = skew, cumulative = cum }
		start = start + step
	end
	return out
end

test("gc_skew: known values", function()
	local w = su.gc_skew("GGGGCCCC", 4)
	eq(#w, 2)
	eq(w[1].start, 1) eq(w[1].stop, 4) eq(w[1].g, 4) eq(w[1].c, 0) eq(w[1].skew, 1) eq(w[1].cumulative, 1)
	eq(w[2].start, 5) eq(w[2].stop, 8) eq(w[2].skew, -1) eq(w[2].cumulative, 0)
	w = su.gc_skew("GGGGCCCC", 4, 2)
	eq(#w, 3)
	eq(w[2].start, 3) eq(w[2].skew, 0)
	eq(tostring(w[2].start) .. " " .. tostring(w[2].stop) .. " " .. tostring(w[2].g), "3 6 2", "whole numbers (not 3.0 on Lua 5.4)")
	eq(w[3].start, 5) eq(w[3].skew, -1)
	w = su.gc_skew("ggga tttt\nGCNN", 4)
	eq(#w, 3)
	near(w[1].skew, 1) eq(w[2].skew, 0, "no G or C") eq(w[3].skew, 0) eq(w[3].g, 1) eq(w[3].c, 1)
	eq(#su.gc_skew("ACG", 4), 0, "shorter than the window")
	eq(#su.gc_skew("", 1), 0, "empty")
	eq(#su.gc_skew("ACGTA", 2), 2, "the partial last window is dropped")
end)

test("gc_skew: agrees with a direct count", function()
	local s = random_seq(1201, "ACGTGGGCN")
	for _, ws in ipairs({ { 100, nil }, { 100, 50 }, { 100, 7 }, { 97, 13 }, { 1, 1 }, { 64, 64 }, { 500, 1000 }, { 1201, 1 } }) do
		local window, step = ws[1], ws[2]
		local got = su.gc_skew(s, window, step)
		local want = ref_skew(s, window, step or window)
		eq(#got, #want, "windows for " .. window .. "/" .. tostring(step))
		for i = 1, #want do
			eq(got[i].start, want[i].start) eq(got[i].stop, want[i].stop) eq(got[i].g, want[i].g) eq(got[i].c, want[i].c)
			near(got[i].skew, want[i].skew, "skew") near(got[i].cumulative, want[i].cumulative, "cumulative")
		end
	end
end)

test("gc_skew: errors", function()
	assert(has(raises(su.gc_skew, nil, 10), "seq_utils.gc_skew: bio_compute.validate: sequence must be a string, got nil"))
	assert(has(raises(su.gc_skew, "ACXT", 2), "invalid character 'X' at position 3"))
	for _, bad in ipairs({ 0, -5, 1.5, "10" }) do
		assert(has(raises(su.gc_skew, "ACGT", bad), "window must be a positive whole number"))
		assert(has(raises(su.gc_skew, "ACGT", 2, bad), "step must be a positive whole number"))
	end
	assert(has(raises(su.gc_skew, "ACGT"), "got nil"))
end)

---------------------------------------------------------------------------
-- stats
---------------------------------------------------------------------------

test("stats", function()
	local recs = {}
	for i, len in ipairs({ 2, 3, 4, 5, 6 }) do
		recs[i] = { id = "c" .. i, sequence = string.rep("G", len - 1) .. "A" }
	end
	local st = su.stats(recs)
	eq(st.count, 5) eq(st.total_length, 20) eq(st.min_length, 2) eq(st.max_length, 6) eq(st.mean_length, 4)
	eq(st.n50, 5, "N50")
	near(st.gc_content, 15 / 20, "gc")
	st = su.stats(">a\nACGT\n>b\nNNNN NNNN\n")
	eq(st.count, 2) eq(st.total_length, 12) eq(st.n50, 8) near(st.gc_content, 0.5)
	st = su.stats({})
	eq(st.count, 0) eq(st.total_length, 0) eq(st.n50, 0) eq(st.gc_content, 0)
	st = su.stats({ id = "solo", sequence = "GGCC" })
	eq(st.count, 1) eq(st.n50, 4) eq(st.gc_content, 1)
	local msg = raises(su.stats, { { id = "p", sequence = "MKLV" } })
	assert(has(msg, "seq_utils.stats: record 1 (p): bio_compute.base_counts: invalid character 'L' at position 3"), msg)
	assert(has(raises(su.stats, { { id = "x" } }), "record 1 has no sequence string"))
	assert(has(raises(su.stats, "junk\n>a\nA"), "seq_utils.stats: seq_utils.parse_fasta: line 1"))
	assert(has(raises(su.stats, nil), "records must be a table, got nil"))
end)

print(string.format("seq_utils tests: %d passed, %d failed", stats.passed, stats.failed))
if stats.failed > 0 then
	os.exit(1)
end
