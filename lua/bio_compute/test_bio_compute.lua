-- Tests for bio_compute. Plain Lua, assert only; exits 1 on any failure.
--
--   lua5.4 lua/bio_compute/test_bio_compute.lua
--   lua5.1 lua/bio_compute/test_bio_compute.lua
--   luajit lua/bio_compute/test_bio_compute.lua
--   go test ./lua/...        (the embedded gopher-lua engine)
--
-- The module is found relative to this file, whatever the working directory.

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
package.path = DIR .. "/src/?.lua;" .. package.path
package.loaded.bio_compute = nil
bio_compute = nil -- luacheck: ignore (checks that require sets the global)

-- Counters live in a table: gopher-lua 1.1.2 closes every open upvalue of
-- the whole stack when an error is caught, so a local counted up by a closure
-- would no longer be seen by this chunk after the first pcall'd error.
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

-- raises(fn, ...) -> the error message of fn(...) (asserting it fails).
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

-- Deterministic pseudo-random generator (Park-Miller); exact in float-only
-- Lua (gopher-lua) and with Lua 5.4 integers alike.
local seed = 12345
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

---------------------------------------------------------------------------
-- Independent reference implementations (slow, obvious).
---------------------------------------------------------------------------

local REF_COMP = {
	A = "T", C = "G", G = "C", T = "A", U = "A", R = "Y", Y = "R", S = "S", W = "W",
	K = "M", M = "K", B = "V", V = "B", D = "H", H = "D", N = "N", ["-"] = "-",
}
local function ref_revcomp(s)
	local out = {}
	for i = #s, 1, -1 do
		local c = string.sub(s, i, i)
		local u = string.upper(c)
		local r = REF_COMP[u]
		out[#out + 1] = (c == u) and r or string.lower(r)
	end
	return table.concat(out)
end

-- The standard code written out codon by codon (not from the TCAG string).
local REF_CODE = {
	TTT = "F", TTC = "F", TTA = "L", TTG = "L", CTT = "L", CTC = "L", CTA = "L", CTG = "L",
	ATT = "I", ATC = "I", ATA = "I", ATG = "M", GTT = "V", GTC = "V", GTA = "V", GTG = "V",
	TCT = "S", TCC = "S", TCA = "S", TCG = "S", CCT = "P", CCC = "P", CCA = "P", CCG = "P",
	ACT = "T", ACC = "T", ACA = "T", ACG = "T", GCT = "A", GCC = "A", GCA = "A", GCG = "A",
	TAT = "Y", TAC = "Y", TAA = "*", TAG = "*", CAT = "H", CAC = "H", CAA = "Q", CAG = "Q",
	AAT = "N", AAC = "N", AAA = "K", AAG = "K", GAT = "D", GAC = "D", GAA = "E", GAG = "E",
	TGT = "C", TGC = "C", TGA = "*", TGG = "W", CGT = "R", CGC = "R", CGA = "R", CGG = "R",
	AGT = "S", AGC = "S", AGA = "R", AGG = "R", GGT = "G", GGC = "G", GGA = "G", GGG = "G",
}
local function ref_translate(s, offset)
	s = string.upper(s)
	local out = {}
	for i = offset + 1, #s - 2, 3 do
		out[#out + 1] = REF_CODE[string.sub(s, i, i + 2)] or "X"
	end
	return table.concat(out)
end

local function ref_is_prime(n)
	if n < 2 then
		return false
	end
	local d = 2
	while d * d <= n do
		if n % d == 0 then
			return false
		end
		d = d + 1
	end
	return true
end

---------------------------------------------------------------------------
-- Loading
---------------------------------------------------------------------------

local returned = require("bio_compute")

test("require sets the global and returns the module", function()
	assert(type(returned) == "table")
	assert(rawequal(bio_compute, returned), "global bio_compute is the returned table")
	assert(rawequal(package.loaded.bio_compute, returned))
	eq(returned.version, "1.0.0", "version")
	for _, f in ipairs({ "compute", "analyze_sequence", "gc_content", "base_counts", "reverse_complement",
		"translate", "six_frame_translation", "kmer_counts", "validate" }) do
		assert(type(returned[f]) == "function", f .. " is a function")
	end
end)

local bc = returned

test("the spec example", function()
	local n = bio_compute.compute(10)
	assert(type(n) == "number")
	eq(n, 4, "compute(10)")
	local result = bio_compute.analyze_sequence("ATCG")
	local line = tostring(result)
	assert(not string.find(line, "^table:"), "tostring shows the analysis: " .. line)
	eq(line, "length=4 gc=0.500 A=1 C=1 G=1 T=1 N=0 other=0 reverse_complement=CGAT translation=I", "tostring")
end)

---------------------------------------------------------------------------
-- compute
---------------------------------------------------------------------------

test("compute: known values of pi(n)", function()
	local known = { [0] = 0, [1] = 0, [2] = 1, [3] = 2, [4] = 2, [10] = 4, [30] = 10, [100] = 25,
		[1000] = 168, [10000] = 1229, [32767] = 3512, [32768] = 3512, [32769] = 3512, [65536] = 6542 }
	for n, want in pairs(known) do
		eq(bc.compute(n), want, "compute(" .. n .. ")")
	end
	eq(bc.compute(10.0), 4, "compute(10.0)")
	eq(tostring(bc.compute(100)), "25", "a whole number (not 25.0 on Lua 5.4)")
end)

test("compute: agrees with trial division", function()
	local count = 0
	for n = 0, 3000 do
		if ref_is_prime(n) then
			count = count + 1
		end
		if n <= 200 or n % 97 == 0 then
			eq(bc.compute(n), count, "compute(" .. n .. ")")
		end
	end
end)

test("compute: bad arguments", function()
	for _, bad in ipairs({ -1, 2.5, "10", true, 1 / 0, -1 / 0, 2 ^ 60 }) do
		local msg = raises(bc.compute, bad)
		assert(has(msg, "bio_compute.compute: n must be a whole number"), msg)
	end
	assert(has(raises(bc.compute), "got nil"))
	assert(has(raises(bc.compute, 0 / 0), "got"))
	assert(has(raises(bc.compute, "10"), "got string"))
end)

---------------------------------------------------------------------------
-- validate and input handling
---------------------------------------------------------------------------

test("validate: normalises", function()
	eq(bc.validate("acgt"), "ACGT")
	eq(bc.validate(""), "")
	eq(bc.validate("AC GT\nac\tgt\r\nNN "), "ACGTACGTNN")
	eq(bc.validate(" \n\t "), "")
	eq(bc.validate("ryswkmbdhvn-u"), "RYSWKMBDHVN-U")
end)

test("validate: non-strings", function()
	for _, v in ipairs({ 1, true, {} }) do
		local msg = raises(bc.validate, v)
		assert(has(msg, "bio_compute.validate: sequence must be a string, got " .. type(v)), msg)
	end
	local msg = raises(bc.validate, nil)
	assert(has(msg, "bio_compute.validate: sequence must be a string, got nil"), msg)
end)

test("errors name the function, the character and the position", function()
	local msg = raises(bc.validate, "ACGTX")
	assert(has(msg, "bio_compute.validate: invalid character 'X' at position 5"), msg)
	msg = raises(bc.analyze_sequence, "AC1")
	assert(has(msg, "bio_compute.analyze_sequence: invalid character '1' at position 3"), msg)
	msg = raises(bc.gc_content, "ACGT\nACGT\nAC*T")
	assert(has(msg, "invalid character '*' at position 13 (line 3, column 3)"), msg)
	msg = raises(bc.reverse_complement, "AC\0GT")
	assert(has(msg, "invalid character byte 0 at position 3"), msg)
	msg = raises(bc.translate, "ACGÃ")
	assert(has(msg, "bio_compute.translate: invalid character byte 195 at position 4"), msg)
	for _, f in ipairs({ "base_counts", "six_frame_translation", "kmer_counts" }) do
		msg = raises(bc[f], "AZ", 1)
		assert(has(msg, "bio_compute." .. f .. ": invalid character 'Z' at position 2"), msg)
	end
	for _, c in ipairs({ "E", "F", "I", "J", "L", "O", "P", "Q", "X", "Z", ".", "*", ">" }) do
		raises(bc.validate, "AC" .. c)
		raises(bc.validate, "AC" .. string.lower(c))
	end
end)

test("errors are reported at the caller's line", function()
	local ok, msg = pcall(function()
		bc.analyze_sequence(nil)
	end)
	assert(not ok)
	assert(string.find(msg, "test_bio_compute%.lua:%d+: bio_compute%.analyze_sequence: sequence must be a string, got nil"),
		msg)
	-- validate too (it once tail-called its check: no position on Lua 5.4 and LuaJIT)
	ok, msg = pcall(function()
		bc.validate("ACGTX")
	end)
	assert(not ok)
	assert(string.find(msg, "test_bio_compute%.lua:%d+: bio_compute%.validate: invalid character 'X'"), msg)
end)

---------------------------------------------------------------------------
-- base_counts and gc_content
---------------------------------------------------------------------------

test("base_counts", function()
	local c = bc.base_counts("AACGTTTN")
	eq(c.A, 2, "A") eq(c.C, 1, "C") eq(c.G, 1, "G") eq(c.T, 3, "T") eq(c.N, 1, "N") eq(c.other, 0, "other")
	c = bc.base_counts("")
	for _, k in ipairs({ "A", "C", "G", "T", "N", "other" }) do
		eq(c[k], 0, k)
	end
	c = bc.base_counts("acgu RYSWKMBDHV --")
	eq(c.A, 1, "A") eq(c.C, 1, "C") eq(c.G, 1, "G") eq(c.T, 1, "T (U counts as T)") eq(c.N, 0, "N")
	eq(c.other, 12, "other (10 ambiguity codes, 2 gaps)")
end)

test("base_counts sum to the length", function()
	local s = random_seq(10007, "ACGTNRYacgtn-")
	local c = bc.base_counts(s)
	eq(c.A + c.C + c.G + c.T + c.N + c.other, #s, "sum")
	local a = 0
	for i = 1, #s do
		if string.upper(string.sub(s, i, i)) == "A" then
			a = a + 1
		end
	end
	eq(c.A, a, "A")
end)

test("gc_content", function()
	eq(bc.gc_content("ATCG"), 0.5)
	eq(bc.gc_content("GGCC"), 1)
	eq(bc.gc_content("AATT"), 0)
	eq(bc.gc_content("gcat"), 0.5)
	eq(bc.gc_content(""), 0, "empty")
	eq(bc.gc_content("NNNN"), 0, "all N")
	eq(bc.gc_content("GCNN"), 1, "N left out")
	eq(bc.gc_content("GCAASWRY--"), 0.5, "ambiguity codes and gaps left out")
	eq(bc.gc_content("GCAU"), 0.5, "U as T")
	local g = bc.gc_content("ACG")
	assert(math.abs(g - 2 / 3) < 1e-12, tostring(g))
	if math.type then -- Lua 5.3+: always a float (the empty case was the integer 0)
		for _, s in ipairs({ "", "NNNN", "AATT", "GGCC" }) do
			eq(math.type(bc.gc_content(s)), "float", s)
			eq(math.type(bc.analyze_sequence(s).gc_content), "float", s)
		end
	end
end)

---------------------------------------------------------------------------
-- reverse_complement
---------------------------------------------------------------------------

test("reverse_complement", function()
	eq(bc.reverse_complement("ATCG"), "CGAT")
	eq(bc.reverse_complement(""), "")
	eq(bc.reverse_complement("A"), "T")
	eq(bc.reverse_complement("AAACCC"), "GGGTTT")
	eq(bc.reverse_complement("acgT"), "Acgt", "case preserved")
	eq(bc.reverse_complement("AC GT\nTT"), "AAACGT", "white space dropped")
	eq(bc.reverse_complement("RYKMSWBDHVN"), "NBDHVWSKMRY", "IUPAC")
	eq(bc.reverse_complement("ryswkmbdhvn"), ref_revcomp("ryswkmbdhvn"))
	eq(bc.reverse_complement("AUGu"), "aCAT", "U -> A")
	eq(bc.reverse_complement("AC--G"), "C--GT", "gaps")
end)

test("long inputs", function()
	-- Over a million characters: no pattern may repeat over the sequence
	-- (gopher-lua's matcher gives up past a million repetitions).
	local body = string.rep(string.rep("ACGT", 15) .. "\r\n", 17000) -- 60-column FASTA body, 1.05 MB
	eq(bc.validate(body), string.rep("ACGT", 15 * 17000))
	local s = string.rep("AACCGGTTN", 30000)
	eq(bc.reverse_complement(s), string.rep("NAACCGGTT", 30000))
	local c = bc.kmer_counts(string.rep("A", 1100000), 2000000) -- one 1.1 MB run, no window fits
	eq(next(c), nil)
end)

test("reverse_complement: twice is identity, matches the reference", function()
	for _, len in ipairs({ 1, 2, 3, 4095, 4096, 4097, 12289 }) do
		local s = random_seq(len, "ACGTRYSWKMBDHVNacgtryswkmbdhvn-")
		local rc = bc.reverse_complement(s)
		eq(#rc, #s, "length")
		eq(rc, ref_revcomp(s), "reference, length " .. len)
		eq(bc.reverse_complement(rc), s, "identity, length " .. len)
	end
end)

---------------------------------------------------------------------------
-- translate and six_frame_translation
---------------------------------------------------------------------------

test("translate: all 64 codons", function()
	for codon, aa in pairs(REF_CODE) do
		eq(bc.translate(codon), aa, codon)
		eq(bc.translate(string.lower(codon)), aa, string.lower(codon))
		eq(bc.translate((string.gsub(codon, "T", "U"))), aa, "RNA " .. codon)
	end
end)

test("translate: frames and partial codons", function()
	local s = "ATGGCCATTGTAATGGGCCGCTGAAAGGGTGCCCGATAG"
	eq(bc.translate(s), "MAIVMGR*KGAR*")
	eq(bc.translate(s, 1), "MAIVMGR*KGAR*")
	eq(bc.translate(s, 2), "WPL*WAAERVPD")
	eq(bc.translate(s, 3), "GHCNGPLKGCPI")
	eq(bc.translate(s, -1), "LSGTLSAAHYNGH")
	eq(bc.translate(s, -2), "YRAPFQRPITMA")
	eq(bc.translate(s, -3), "IGHPFSGPLQWP")
	eq(bc.translate(""), "")
	eq(bc.translate("AT"), "", "partial codon")
	eq(bc.translate("ATGA"), "M", "trailing base ignored")
	eq(bc.translate("ATGAA"), "M", "trailing bases ignored")
	eq(bc.translate("ATG", 2), "")
	eq(bc.translate("ATG", 3), "")
	eq(bc.translate("ATG", -1), "H")
	eq(bc.translate("ATGC", 2), "C")
	eq(bc.translate("ATG\nGCC"), "MA", "white space dropped")
	for len = 0, 12 do
		local s2 = random_seq(len, "ACGT")
		for f = 1, 3 do
			local want = math.floor(math.max(len - (f - 1), 0) / 3)
			eq(#bc.translate(s2, f), want, "length of frame " .. f .. " of " .. len)
			eq(#bc.translate(s2, -f), want, "length of frame -" .. f .. " of " .. len)
		end
	end
end)

test("translate: ambiguity codes", function()
	eq(bc.translate("NNN"), "X")
	eq(bc.translate("GGN"), "G", "every reading is Gly")
	eq(bc.translate("CTN"), "L")
	eq(bc.translate("TAR"), "*", "TAA/TAG")
	eq(bc.translate("TRA"), "*", "TAA/TGA")
	eq(bc.translate("ATN"), "X", "Ile or Met")
	eq(bc.translate("AAR"), "K")
	eq(bc.translate("AAY"), "N")
	eq(bc.translate("MGR"), "R", "AGA AGG CGA CGG")
	eq(bc.translate("YTR"), "L", "TTA TTG CTA CTG")
	eq(bc.translate("ATH"), "I")
	eq(bc.translate("gcn"), "A")
	eq(bc.translate("---"), "-", "gap codon")
	eq(bc.translate("A-G"), "X")
	eq(bc.translate("ATGNNNTAA"), "MX*")
end)

test("translate: bad frames", function()
	for _, f in ipairs({ 0, 4, -4, 1.5, "1", true }) do
		local msg = raises(bc.translate, "ATG", f)
		assert(has(msg, "bio_compute.translate: frame must be 1, 2, 3, -1, -2 or -3, got " .. tostring(f)), msg)
	end
end)

test("translate: long sequences match the reference", function()
	-- 24583 bases: 4097 codon pairs, past one 4096-piece output chunk.
	for _, len in ipairs({ 31, 3 * 4096 * 2 + 7 }) do
		local s = random_seq(len, "ACGTacgt")
		local rc = ref_revcomp(s)
		for f = 1, 3 do
			eq(bc.translate(s, f), ref_translate(s, f - 1), "frame " .. f .. " length " .. len)
			eq(bc.translate(s, -f), ref_translate(rc, f - 1), "frame -" .. f .. " length " .. len)
		end
	end
end)

test("six_frame_translation agrees with translate", function()
	for _, s in ipairs({ "", "A", "ATGC", "ATGGCCATTGTAATGGGCCGCTGAAAGGGTGCCCGATAG", random_seq(5000, "ACGTN") }) do
		local six = bc.six_frame_translation(s)
		local n = 0
		for _ in pairs(six) do
			n = n + 1
		end
		eq(n, 6, "six entries")
		for _, f in ipairs({ 1, 2, 3, -1, -2, -3 }) do
			eq(six[f], bc.translate(s, f), "frame " .. f)
		end
	end
	raises(bc.six_frame_translation, nil)
end)

---------------------------------------------------------------------------
-- kmer_counts
---------------------------------------------------------------------------

local function count_keys(t)
	local n, total = 0, 0
	for _, v in pairs(t) do
		n = n + 1
		total = total + v
	end
	return n, total
end

test("kmer_counts", function()
	local c = bc.kmer_counts("ACGTACGT", 2)
	eq(c.AC, 2, "AC") eq(c.CG, 2, "CG") eq(c.GT, 2, "GT") eq(c.TA, 1, "TA")
	local keys, total = count_keys(c)
	eq(keys, 4, "distinct") eq(total, 7, "windows")
	c = bc.kmer_counts("acgtNacg", 3)
	eq(c.ACG, 2, "ACG") eq(c.CGT, 1, "CGT")
	keys, total = count_keys(c)
	eq(keys, 2, "distinct (k-mers with N skipped)") eq(total, 3, "windows")
	keys = count_keys(bc.kmer_counts("ACG", 4))
	eq(keys, 0, "k longer than the sequence")
	keys = count_keys(bc.kmer_counts("", 1))
	eq(keys, 0, "empty")
	keys = count_keys(bc.kmer_counts("NNNNNN", 2))
	eq(keys, 0, "all N")
	c = bc.kmer_counts("AARAA-AA", 2)
	eq(c.AA, 3, "ambiguity codes and gaps split k-mers")
	c = bc.kmer_counts("AC\nGT", 4)
	eq(c.ACGT, 1, "white space dropped first")
end)

test("kmer_counts: k = 1 matches base_counts; totals", function()
	local s = random_seq(5000, "ACGTACGTACGTN")
	local k1 = bc.kmer_counts(s, 1)
	local bcnt = bc.base_counts(s)
	for _, b in ipairs({ "A", "C", "G", "T" }) do
		eq(k1[b], bcnt[b], b)
	end
	assert(k1.N == nil)
	for _, k in ipairs({ 2, 3, 5, 8 }) do
		local want = 0
		for i = 1, #s - k + 1 do
			if not string.find(string.sub(s, i, i + k - 1), "N", 1, true) then
				want = want + 1
			end
		end
		local _, total = count_keys(bc.kmer_counts(s, k))
		eq(total, want, "windows for k=" .. k)
	end
end)

test("kmer_counts: bad k", function()
	for _, k in ipairs({ 0, -1, 1.5, "2", true }) do
		local msg = raises(bc.kmer_counts, "ACGT", k)
		assert(has(msg, "bio_compute.kmer_counts: k must be a positive integer"), msg)
	end
	assert(has(raises(bc.kmer_counts, "ACGT"), "got nil"))
end)

---------------------------------------------------------------------------
-- analyze_sequence
---------------------------------------------------------------------------

test("analyze_sequence", function()
	local r = bc.analyze_sequence("atcg")
	eq(r.length, 4, "length")
	eq(r.gc_content, 0.5, "gc_content")
	eq(r.counts.A, 1) eq(r.counts.C, 1) eq(r.counts.G, 1) eq(r.counts.T, 1) eq(r.counts.N, 0) eq(r.counts.other, 0)
	eq(r.reverse_complement, "CGAT", "reverse_complement is upper case")
	eq(r.translation, "I")
	assert(type(getmetatable(r).__tostring) == "function")
end)

test("analyze_sequence: edge cases", function()
	local r = bc.analyze_sequence("")
	eq(r.length, 0) eq(r.gc_content, 0) eq(r.reverse_complement, "") eq(r.translation, "")
	eq(tostring(r), "length=0 gc=0.000 A=0 C=0 G=0 T=0 N=0 other=0 reverse_complement= translation=")
	r = bc.analyze_sequence("NNNNNN")
	eq(r.counts.N, 6) eq(r.gc_content, 0) eq(r.translation, "XX") eq(r.reverse_complement, "NNNNNN")
	local msg = raises(bc.analyze_sequence, ">header\nACGT")
	assert(has(msg, "invalid character '>' at position 1"), msg)
end)

test("analyze_sequence: FASTA body, IUPAC, long summary", function()
	local s = "ATGGCCATTG\nTAATGGGCCG\nCTGAAAGGGT\nGCCCGATAGR\n"
	local r = bc.analyze_sequence(s)
	eq(r.length, 40)
	eq(r.counts.other, 1, "R")
	eq(r.translation, "MAIVMGR*KGAR*")
	eq(r.reverse_complement, "YCTATCGGGCACCCTTTCAGCGGCCCATTACAATGGCCAT")
	eq(tostring(r), "length=40 gc=0.564 A=9 C=8 G=14 T=8 N=0 other=1 " ..
		"reverse_complement=YCTATCGGGCACCCTTTCAGCGGCCCA... translation=MAIVMGR*KGAR*")
end)

test("analyze_sequence agrees with the other functions", function()
	local s = random_seq(10001, "ACGTNacgtnRY")
	local r = bc.analyze_sequence(s)
	eq(r.length, #s)
	eq(r.gc_content, bc.gc_content(s))
	local c = bc.base_counts(s)
	for k, v in pairs(c) do
		eq(r.counts[k], v, k)
	end
	eq(r.reverse_complement, bc.reverse_complement(string.upper(s)))
	eq(r.translation, bc.translate(s, 1))
end)

test("analyze_sequence: bad input", function()
	assert(has(raises(bc.analyze_sequence), "bio_compute.analyze_sequence: sequence must be a string, got nil"))
	assert(has(raises(bc.analyze_sequence, 42), "got number"))
end)

print(string.format("bio_compute tests: %d passed, %d failed", stats.passed, stats.failed))
if stats.failed > 0 then
	os.exit(1)
end
