--- bio_compute: pure-Lua DNA sequence analysis.
--
-- Runs unchanged on Lua 5.1, 5.2, 5.3, 5.4, LuaJIT and gopher-lua (float-only
-- numbers, no bit operations, no utf8 library). No C code, no dependencies.
--
--     local bio_compute = require("bio_compute")
--     print(bio_compute.analyze_sequence("ATCG"))
--     --> length=4 gc=0.500 A=1 C=1 G=1 T=1 N=0 other=0 reverse_complement=CGAT translation=I
--
-- Loading the module also sets the global `bio_compute` (the same table it
-- returns), because the original pylua_bioxen_vm_lib examples call
-- `require("bio_compute")` without keeping the result and then use the global.
--
-- Sequences: IUPAC nucleotide codes A C G T U R Y S W K M B D H V N and the
-- gap '-', in either case. White space (spaces, tabs, newlines: FASTA bodies)
-- is ignored. Any other character raises an error naming it and its position
-- in the string given. See docs/bio_compute.md for the full reference.
--
-- Performance notes (multi-megabyte sequences, every interpreter):
-- * no string.gsub over sequence data (gopher-lua's copies the whole string
--   on every replacement) and no quantified patterns (see clean());
-- * bytes are read sixteen at a time with string.byte into locals; results
--   are built in tables and joined with table.concat, never by repeated `..`;
-- * translation looks up two codons (six bases) at a time.
--
-- Native kernels: the embedded engine of libbioxen (gopher-lua, 4-10x slower
-- than lua5.4 on these loops) preloads a Go module "bio_compute.native" with
-- the same loops; when package.preload has it this module calls it for the
-- work on validated sequences and keeps everything else (argument checks,
-- errors, result tables) in Lua, so results and errors are the same.
-- M.native_kernels tells which is in use. Other interpreters run the Lua
-- loops below. To force them on the embedded engine, remove
-- package.preload["bio_compute.native"] before the first require.

local M = {}

M._VERSION = "bio_compute 1.0.0"
M.version = "1.0.0"

local type, error, tostring, setmetatable, pairs, xpcall = type, error, tostring, setmetatable, pairs, xpcall
local floor, sqrt = math.floor, math.sqrt
local byte, char, sub, find, upper, lower, reverse, format = string.byte, string.char, string.sub, string.find,
	string.upper, string.lower, string.reverse, string.format
local concat = table.concat

-- gopher-lua counts error() levels one lower than Lua 5.x (its level 2 is
-- the function calling error). Measure it once so that errors point at the
-- line that called the public function on every interpreter. xpcall, not
-- pcall: gopher-lua 1.1.2 closes every open upvalue on the stack (the
-- requiring chunk's too) when pcall catches an error, but not under xpcall.
local LEVEL_SHIFT = 0
do
	local function raise(level)
		error("", level)
	end
	local function caller(level)
		raise(level) -- a different line from the error() call
	end
	local function handler(msg)
		return msg
	end
	local _, at1 = xpcall(function()
		caller(1)
	end, handler)
	local _, at2 = xpcall(function()
		caller(2)
	end, handler)
	if at1 == at2 then
		LEVEL_SHIFT = 1
	end
end

-- The native kernels, when the host preloads them: only package.preload is
-- looked at (no file search, and no pcall: see above), and a module with an
-- unknown interface is ignored.
local native
do
	local preload = type(package) == "table" and package.preload
	if type(preload) == "table" and type(preload["bio_compute.native"]) == "function"
		and type(require) == "function" then
		local mod = require("bio_compute.native")
		if type(mod) == "table" and mod.abi == 1 then
			native = mod
		end
	end
end
local N_clean = native and native.clean
local N_counts = native and native.base_counts
local N_revcomp = native and native.reverse_complement
local N_translate = native and native.translate
local N_six = native and native.six_frames
local N_kmers = native and native.kmer_counts
M.native_kernels = native ~= nil

-- Output pieces gathered before they are joined into one chunk, so that no
-- table grows to millions of one-character strings.
local CHUNK = 4096

---------------------------------------------------------------------------
-- Alphabet
---------------------------------------------------------------------------

-- The bases each IUPAC code stands for (U is read as T).
local EXPAND = {
	A = "A", C = "C", G = "G", T = "T", U = "T",
	R = "AG", Y = "CT", S = "CG", W = "AT", K = "GT", M = "AC",
	B = "CGT", D = "AGT", H = "ACT", V = "ACG", N = "ACGT",
}

-- Complement of each code; lower case maps to lower case. U (RNA) is
-- complemented to A, and A always to T: output is DNA.
local COMPLEMENT = {
	A = "T", T = "A", U = "A", C = "G", G = "C",
	R = "Y", Y = "R", K = "M", M = "K", S = "S", W = "W",
	B = "V", V = "B", D = "H", H = "D", N = "N", ["-"] = "-",
}
local COMP_BYTE = {}
for k, v in pairs(COMPLEMENT) do
	COMP_BYTE[byte(k)] = byte(v)
	COMP_BYTE[byte(lower(k))] = byte(lower(v))
end

-- Anything outside the alphabet (white space is skipped, not rejected).
local INVALID = "[^%sACGTURYSWKMBDHVNacgturyswkmbdhvn%-]"
-- Anything but a sequence letter (white space included).
local NONSEQ = "[^ACGTURYSWKMBDHVNacgturyswkmbdhvn%-]"

local function show_char(c)
	local b = byte(c)
	if b >= 32 and b < 127 then
		return format("'%s'", c)
	end
	return format("byte %d", b)
end

local function invalid_message(fname, seq, p)
	local line, col = 1, p
	local nl = find(seq, "\n", 1, true)
	if nl and nl < p then
		local last = 0
		while nl and nl < p do
			line = line + 1
			last = nl
			nl = find(seq, "\n", nl + 1, true)
		end
		col = p - last
	end
	local where = format("position %d", p)
	if line > 1 then
		where = format("%s (line %d, column %d)", where, line, col)
	end
	return format("bio_compute.%s: invalid character %s at %s; expected IUPAC nucleotide codes " ..
		"ACGTURYSWKMBDHVN, '-' or white space", fname, show_char(sub(seq, p, p)), where)
end

-- clean checks seq and returns it without white space, upper-cased unless
-- keep_case. Errors point at the caller of the public function (level 3).
--
-- Patterns over sequence data are single characters, never quantified
-- ("%S+", "[ACGT]+"): gopher-lua's matcher recurses once per repeated
-- character and gives up ("pattern/input too complex") on long runs.
local function clean(seq, fname, keep_case)
	if type(seq) ~= "string" then
		error(format("bio_compute.%s: sequence must be a string, got %s", fname, type(seq)), 3 + LEVEL_SHIFT)
	end
	if N_clean then
		local s = N_clean(seq, keep_case)
		if s then
			return s
		end
		-- An invalid character: the Lua code below finds and reports it.
	end
	-- One scan in the common case: only sequence letters.
	local p = find(seq, NONSEQ)
	if p then
		if not find(sub(seq, p, p), "%s") then
			error(invalid_message(fname, seq, p), 3 + LEVEL_SHIFT)
		end
		-- Drop white space: copy the runs between white-space characters.
		local parts, n, pos, len = {}, 0, 1, #seq
		while pos <= len do
			local w = find(seq, "%s", pos)
			if not w then
				n = n + 1
				parts[n] = sub(seq, pos)
				break
			end
			if w > pos then
				n = n + 1
				parts[n] = sub(seq, pos, w - 1)
			end
			pos = w + 1
		end
		local stripped = concat(parts)
		if find(stripped, NONSEQ) then
			-- Report the position in the string the caller gave.
			error(invalid_message(fname, seq, find(seq, INVALID)), 3 + LEVEL_SHIFT)
		end
		seq = stripped
	end
	if not keep_case then
		seq = upper(seq)
	end
	return seq
end

-- is_integer reports whether v is a finite whole number (Lua 5.4 integers
-- and floats alike). Infinities fail v - v == 0 (plain gopher-lua's
-- math.huge is the largest finite float, not infinity).
local function is_integer(v)
	return type(v) == "number" and v - v == 0 and floor(v) == v
end

---------------------------------------------------------------------------
-- Counting
---------------------------------------------------------------------------

-- byte_counts counts every byte value in s (0..255 -> count). Sixteen bytes
-- per string.byte call into locals: the fastest way on every interpreter
-- measured (2x a table of bytes on gopher-lua, 5x on LuaJIT).
local function byte_counts(s)
	local cnt = {}
	for b = 0, 255 do
		cnt[b] = 0
	end
	local n = #s
	local last = n - n % 16
	for i = 1, last, 16 do
		local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16 = byte(s, i, i + 15)
		cnt[b1] = cnt[b1] + 1
		cnt[b2] = cnt[b2] + 1
		cnt[b3] = cnt[b3] + 1
		cnt[b4] = cnt[b4] + 1
		cnt[b5] = cnt[b5] + 1
		cnt[b6] = cnt[b6] + 1
		cnt[b7] = cnt[b7] + 1
		cnt[b8] = cnt[b8] + 1
		cnt[b9] = cnt[b9] + 1
		cnt[b10] = cnt[b10] + 1
		cnt[b11] = cnt[b11] + 1
		cnt[b12] = cnt[b12] + 1
		cnt[b13] = cnt[b13] + 1
		cnt[b14] = cnt[b14] + 1
		cnt[b15] = cnt[b15] + 1
		cnt[b16] = cnt[b16] + 1
	end
	for i = last + 1, n do
		local b = byte(s, i)
		cnt[b] = cnt[b] + 1
	end
	return cnt
end

local function counts_table(a, c, g, t, n, other)
	return { A = a, C = c, G = g, T = t, N = n, other = other }
end

-- counts_of: the A C G T N other counts of an upper-case clean sequence.
local function counts_of(s)
	if N_counts then
		return counts_table(N_counts(s))
	end
	local cnt = byte_counts(s)
	local a, c, g, n = cnt[65], cnt[67], cnt[71], cnt[78] -- A C G N
	local t = cnt[84] + cnt[85] -- T and U
	return counts_table(a, c, g, t, n, #s - a - c - g - t - n)
end

local function gc_of(c)
	local total = c.A + c.C + c.G + c.T
	if total == 0 then
		return 0.0 -- a float, as every other result (Lua 5.3+ prints 0.0)
	end
	return (c.G + c.C) / total
end

---------------------------------------------------------------------------
-- Reverse complement
---------------------------------------------------------------------------

-- revcomp_of complements the reversed string sixteen bytes at a time.
local function revcomp_of(s)
	if N_revcomp then
		return N_revcomp(s)
	end
	local r = reverse(s)
	local C = COMP_BYTE
	local n = #r
	local last = n - n % 16
	local out, k = {}, 0
	local chunks, nc = {}, 0
	for i = 1, last, 16 do
		local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16 = byte(r, i, i + 15)
		k = k + 1
		out[k] = char(C[b1], C[b2], C[b3], C[b4], C[b5], C[b6], C[b7], C[b8],
			C[b9], C[b10], C[b11], C[b12], C[b13], C[b14], C[b15], C[b16])
		if k == CHUNK then
			nc = nc + 1
			chunks[nc] = concat(out, "", 1, k)
			k = 0
		end
	end
	for i = last + 1, n do
		k = k + 1
		out[k] = char(C[byte(r, i)])
	end
	nc = nc + 1
	chunks[nc] = concat(out, "", 1, k)
	return concat(chunks)
end

---------------------------------------------------------------------------
-- Translation (standard genetic code, NCBI table 1)
---------------------------------------------------------------------------

local BASES = "TCAG"
local AMINO = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"

local STANDARD = {}
do
	local i = 0
	for a = 1, 4 do
		for b = 1, 4 do
			for c = 1, 4 do
				i = i + 1
				STANDARD[sub(BASES, a, a) .. sub(BASES, b, b) .. sub(BASES, c, c)] = sub(AMINO, i, i)
			end
		end
	end
end

-- resolve translates a codon holding U, ambiguity codes or gaps: the amino
-- acid every possible reading agrees on, else 'X'; "---" is a gap ('-').
local function resolve(codon)
	if find(codon, "-", 1, true) then
		return codon == "---" and "-" or "X"
	end
	local e1, e2, e3 = EXPAND[sub(codon, 1, 1)], EXPAND[sub(codon, 2, 2)], EXPAND[sub(codon, 3, 3)]
	if not (e1 and e2 and e3) then
		return "X"
	end
	local aa
	for i = 1, #e1 do
		for j = 1, #e2 do
			for k = 1, #e3 do
				local a = STANDARD[sub(e1, i, i) .. sub(e2, j, j) .. sub(e3, k, k)]
				if aa == nil then
					aa = a
				elseif a ~= aa then
					return "X"
				end
			end
		end
	end
	return aa
end

-- CODON: upper-case codon -> one-letter amino acid; ambiguous codons are
-- resolved on first use and remembered (at most 18^3 entries).
local CODON = setmetatable({}, {
	__index = function(t, codon)
		local aa = resolve(codon)
		t[codon] = aa
		return aa
	end,
})
for k, v in pairs(STANDARD) do
	CODON[k] = v
end

-- Two codons at a time: a 6-base string -> two amino acids, remembered for
-- the length of one call (4096 entries for plain DNA). One table look-up per
-- six bases is 1.5-2x faster than one per codon (LuaJIT: about the same).
local PAIR_MT = {
	__index = function(t, six)
		local aa = CODON[sub(six, 1, 3)] .. CODON[sub(six, 4, 6)]
		t[six] = aa
		return aa
	end,
}

-- translate_of translates an upper-case clean sequence from 0-based offset;
-- a trailing partial codon is ignored.
local function translate_of(s, offset)
	if N_translate then
		return N_translate(s, offset + 1)
	end
	local codons = floor((#s - offset) / 3)
	if codons <= 0 then
		return ""
	end
	local pairs_ = floor(codons / 2)
	local memo = setmetatable({}, PAIR_MT)
	local out, n = {}, 0
	local chunks, nc = {}, 0
	for i = offset + 1, offset + 6 * pairs_, 6 do
		n = n + 1
		out[n] = memo[sub(s, i, i + 5)]
		if n == CHUNK then
			nc = nc + 1
			chunks[nc] = concat(out, "", 1, n)
			n = 0
		end
	end
	if codons % 2 == 1 then
		local i = offset + 6 * pairs_ + 1
		n = n + 1
		out[n] = CODON[sub(s, i, i + 2)]
	end
	nc = nc + 1
	chunks[nc] = concat(out, "", 1, n)
	return concat(chunks)
end

local function check_frame(frame, fname)
	if frame == nil then
		return 1
	end
	if frame == 1 or frame == 2 or frame == 3 or frame == -1 or frame == -2 or frame == -3 then
		return frame
	end
	error(format("bio_compute.%s: frame must be 1, 2, 3, -1, -2 or -3, got %s", fname, tostring(frame)), 3 + LEVEL_SHIFT)
end

---------------------------------------------------------------------------
-- Public API
---------------------------------------------------------------------------

--- validate(seq) -> the normalised sequence: white space removed, upper case.
-- Raises an error for a non-string or a character outside the alphabet.
function M.validate(seq)
	-- Not a tail call: Lua 5.2+ and LuaJIT keep no frame for one, and the
	-- error level of clean would then point past the caller's line.
	local s = clean(seq, "validate")
	return s
end

--- base_counts(seq) -> {A=, C=, G=, T=, N=, other=}. U counts as T; other
-- counts the remaining IUPAC codes and gaps. The counts sum to the length.
function M.base_counts(seq)
	return counts_of(clean(seq, "base_counts"))
end

--- gc_content(seq) -> (G + C) / (A + C + G + T), a number in 0..1.
-- Ambiguity codes (including S), N and gaps are left out of both sides;
-- 0 when the sequence has no A, C, G or T (empty, all N).
function M.gc_content(seq)
	return gc_of(counts_of(clean(seq, "gc_content")))
end

--- reverse_complement(seq) -> string. IUPAC-aware; case is preserved
-- (soft-masked lower-case stays lower case); white space is dropped; U is
-- complemented to A.
function M.reverse_complement(seq)
	return revcomp_of(clean(seq, "reverse_complement", true))
end

--- translate(seq, frame) -> protein string (standard code). frame 1, 2, 3
-- start at base 1, 2, 3; -1, -2, -3 do the same on the reverse complement.
-- Default 1. '*' is a stop, 'X' an undetermined amino acid; a trailing
-- partial codon is ignored.
function M.translate(seq, frame)
	local s = clean(seq, "translate")
	frame = check_frame(frame, "translate")
	if N_translate then
		return N_translate(s, frame)
	end
	if frame < 0 then
		return translate_of(revcomp_of(s), -frame - 1)
	end
	return translate_of(s, frame - 1)
end

--- six_frame_translation(seq) -> {[1]=, [2]=, [3]=, [-1]=, [-2]=, [-3]=}.
function M.six_frame_translation(seq)
	local s = clean(seq, "six_frame_translation")
	if N_six then
		local f1, f2, f3, r1, r2, r3 = N_six(s)
		return { [1] = f1, [2] = f2, [3] = f3, [-1] = r1, [-2] = r2, [-3] = r3 }
	end
	local rc = revcomp_of(s)
	return {
		[1] = translate_of(s, 0),
		[2] = translate_of(s, 1),
		[3] = translate_of(s, 2),
		[-1] = translate_of(rc, 0),
		[-2] = translate_of(rc, 1),
		[-3] = translate_of(rc, 2),
	}
end

--- kmer_counts(seq, k) -> {kmer = count}. Upper-case k-mers over A, C, G, T
-- (and U); k-mers touching N, another ambiguity code or a gap are skipped.
function M.kmer_counts(seq, k)
	local s = clean(seq, "kmer_counts")
	if not is_integer(k) or k < 1 then
		error(format("bio_compute.kmer_counts: k must be a positive integer, got %s", tostring(k)), 2 + LEVEL_SHIFT)
	end
	if N_kmers then
		return N_kmers(s, k)
	end
	local counts = {}
	local pos, n = 1, #s
	while pos <= n do
		-- The run pos..stop-1 holds only A, C, G, T and U.
		local stop = find(s, "[^ACGTU]", pos) or n + 1
		for i = pos, stop - k do
			local km = sub(s, i, i + k - 1)
			counts[km] = (counts[km] or 0) + 1
		end
		pos = stop + 1
	end
	return counts
end

local function abbreviate(s)
	if #s > 30 then
		return sub(s, 1, 27) .. "..."
	end
	return s
end

local Analysis = {}

Analysis.__tostring = function(r)
	local c = r.counts
	return format("length=%d gc=%.3f A=%d C=%d G=%d T=%d N=%d other=%d reverse_complement=%s translation=%s",
		r.length, r.gc_content, c.A, c.C, c.G, c.T, c.N, c.other,
		abbreviate(r.reverse_complement), abbreviate(r.translation))
end

--- analyze_sequence(seq) -> analysis table:
--   length, gc_content, counts {A, C, G, T, N, other}, reverse_complement
--   (upper case), translation (frame 1). tostring() gives a one-line summary.
function M.analyze_sequence(seq)
	local s = clean(seq, "analyze_sequence")
	local c = counts_of(s)
	return setmetatable({
		length = #s,
		gc_content = gc_of(c),
		counts = c,
		reverse_complement = revcomp_of(s),
		translation = translate_of(s, 0),
	}, Analysis)
end

--- compute(n) -> the number of primes <= n (pi(n)), by a segmented sieve of
-- Eratosthenes: O(n log log n) time, O(sqrt(n)) memory. A deterministic CPU
-- kernel for benchmarks and smoke tests: compute(10) == 4,
-- compute(1000000) == 78498. n must be a whole number >= 0 (at most 2^53).
function M.compute(n)
	if not is_integer(n) or n < 0 or n > 9007199254740992 then
		error(format("bio_compute.compute: n must be a whole number between 0 and 2^53, got %s",
			type(n) == "number" and tostring(n) or type(n)), 2 + LEVEL_SHIFT)
	end
	if n < 2 then
		return 0
	end
	local limit = floor(sqrt(n))
	while (limit + 1) * (limit + 1) <= n do
		limit = limit + 1
	end
	while limit * limit > n do
		limit = limit - 1
	end
	-- Primes up to sqrt(n).
	local composite, primes, np = {}, {}, 0
	for i = 2, limit do
		if not composite[i] then
			np = np + 1
			primes[np] = i
			for j = i * i, limit, i do
				composite[j] = true
			end
		end
	end
	-- Sieve [low, high] segments with them.
	local SEG = 32768
	local mark = {}
	local count = 0
	local low = 2
	while low <= n do
		local high = low + SEG - 1
		if high > n then
			high = n
		end
		local size = high - low
		for i = 0, size do
			mark[i] = false
		end
		for q = 1, np do
			local p = primes[q]
			local start = p * p
			if start > high then
				break
			end
			if start < low then
				start = low + (p - (low % p)) % p
			end
			for j = start - low, size, p do
				mark[j] = true
			end
		end
		for i = 0, size do
			if not mark[i] then
				count = count + 1
			end
		end
		low = high + 1
	end
	return count
end

-- The original library's examples use the global after a bare require().
if type(_G) == "table" then
	_G.bio_compute = M
end

return M
