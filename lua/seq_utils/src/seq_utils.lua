--- seq_utils: FASTA reading and writing, GC skew and assembly statistics.
--
-- Pure Lua (5.1 to 5.4, LuaJIT, gopher-lua). Depends on bio_compute for
-- sequence validation and base counting.
--
--     local seq_utils = require("seq_utils")
--     for _, r in ipairs(seq_utils.parse_fasta(">chr1 test\nACGT\nGGCC\n")) do
--       print(r.id, r.description, r.sequence)      --> chr1  test  ACGTGGCC
--     end
--
-- Like bio_compute, loading the module also sets the global `seq_utils`.
-- See docs/bio_compute.md for the full reference.

local bio_compute = require("bio_compute")

local M = {}

M._VERSION = "seq_utils 1.0.0"
M.version = "1.0.0"

local type, error, tostring, ipairs, xpcall = type, error, tostring, ipairs, xpcall
local floor = math.floor
local byte, sub, find, match, format = string.byte, string.sub, string.find, string.match, string.format
local concat, sort = table.concat, table.sort

-- gopher-lua counts error() levels one lower than Lua 5.x; see bio_compute.
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

-- fail raises msg at the caller of the public function that called fail.
local function fail(msg)
	error(msg, 3 + LEVEL_SHIFT)
end

local function is_integer(v)
	return type(v) == "number" and v == v and v > -1 / 0 and v < 1 / 0 and floor(v) == v
end

-- strip_space removes all white space; single-character patterns only
-- (gopher-lua's matcher gives up on quantifiers over long runs).
local function strip_space(s)
	if not find(s, "%s") then
		return s
	end
	local parts, n, pos, len = {}, 0, 1, #s
	while pos <= len do
		local w = find(s, "%s", pos)
		if not w then
			n = n + 1
			parts[n] = sub(s, pos)
			break
		end
		if w > pos then
			n = n + 1
			parts[n] = sub(s, pos, w - 1)
		end
		pos = w + 1
	end
	return concat(parts)
end

-- protected(fn, a, b) -> true, result or false, message. The message is
-- cut to start at its "bio_compute." or "seq_utils." function name (the
-- "file:line:" in front of it is of no use inside another message). xpcall,
-- not pcall: gopher-lua 1.1.2's pcall closes every open upvalue on the stack
-- when it catches an error.
local function protected(fn, a, b)
	local ok, res = xpcall(function()
		return fn(a, b)
	end, function(msg)
		return msg
	end)
	if not ok then
		res = tostring(res)
		if not (find(res, "^bio_compute%.") or find(res, "^seq_utils%.")) then
			-- "path:line: name: ..." (the path may itself hold "seq_utils.")
			local a = find(res, ": bio_compute.", 1, true)
			local b = find(res, ": seq_utils.", 1, true)
			local at = (a and b) and math.min(a, b) or a or b
			if at then
				res = sub(res, at + 2)
			end
		end
	end
	return ok, res
end

---------------------------------------------------------------------------
-- FASTA
---------------------------------------------------------------------------

--- parse_fasta(text [, options]) -> list of records {id=, description=, sequence=}.
-- id is the header's first word, description the rest of the header line
-- ("" when absent). Sequence lines are joined with all white space removed;
-- case is kept and the letters are not checked unless options.validate is
-- true, which runs bio_compute.validate on each sequence (nucleotides only,
-- upper-cased). Blank lines and ';' comment lines are skipped; \r\n and \n
-- line ends both work. Text before the first '>' header is an error.
function M.parse_fasta(text, options)
	if type(text) ~= "string" then
		fail(format("seq_utils.parse_fasta: text must be a string, got %s", type(text)))
	end
	if options ~= nil and type(options) ~= "table" then
		fail(format("seq_utils.parse_fasta: options must be a table, got %s", type(options)))
	end
	local validate = options and options.validate
	local records, nr = {}, 0
	local current, lines, nl
	local function finish()
		if current then
			local seq = strip_space(concat(lines, "", 1, nl))
			if validate then
				local ok, res = protected(bio_compute.validate, seq)
				if not ok then
					return format("record %d (%s): %s", nr, current.id, tostring(res))
				end
				seq = res
			end
			current.sequence = seq
		end
	end
	local pos, len, lineno = 1, #text, 0
	while pos <= len do
		local e = find(text, "\n", pos, true)
		local line
		if e then
			line = sub(text, pos, e - 1)
			pos = e + 1
		else
			line = sub(text, pos)
			pos = len + 1
		end
		lineno = lineno + 1
		local first = byte(line, 1)
		if first == 62 then -- '>'
			local msg = finish()
			if msg then
				fail("seq_utils.parse_fasta: " .. msg)
			end
			local header = sub(line, 2)
			local id, desc = match(header, "^%s*(%S*)%s*(.-)%s*$")
			nr = nr + 1
			current = { id = id, description = desc }
			records[nr] = current
			lines, nl = {}, 0
		elseif first ~= 59 and find(line, "%S") then -- not a ';' comment, not blank
			if not current then
				fail(format("seq_utils.parse_fasta: line %d: sequence data before the first '>' header", lineno))
			end
			nl = nl + 1
			lines[nl] = line
		end
	end
	local msg = finish()
	if msg then
		fail("seq_utils.parse_fasta: " .. msg)
	end
	return records
end

local function check_record(r, i, fname)
	if type(r) ~= "table" then
		fail(format("seq_utils.%s: record %d must be a table, got %s", fname, i, type(r)))
	end
	if type(r.id) ~= "string" or find(r.id, "[\r\n]") then
		fail(format("seq_utils.%s: record %d: id must be a string without line breaks", fname, i))
	end
	if r.description ~= nil and (type(r.description) ~= "string" or find(r.description, "[\r\n]")) then
		fail(format("seq_utils.%s: record %d: description must be a string without line breaks", fname, i))
	end
	if type(r.sequence) ~= "string" then
		fail(format("seq_utils.%s: record %d: sequence must be a string, got %s", fname, i, type(r.sequence)))
	end
end

-- records_of accepts a list of records or a single record.
local function records_of(records, fname)
	if type(records) ~= "table" then
		fail(format("seq_utils.%s: records must be a table, got %s", fname, type(records)))
	end
	if records.sequence ~= nil or records.id ~= nil then
		return { records }
	end
	return records
end

local function format_records(records, width, fname)
	if width == nil then
		width = 60
	end
	if not is_integer(width) or width < 0 then
		fail(format("seq_utils.%s: width must be a whole number >= 0, got %s", fname, tostring(width)))
	end
	local out, n = {}, 0
	for i, r in ipairs(records) do
		check_record(r, i, fname)
		local header = ">" .. r.id
		if r.description and r.description ~= "" then
			header = header .. " " .. r.description
		end
		n = n + 1
		out[n] = header
		local seq = r.sequence
		if width == 0 or #seq <= width then
			if #seq > 0 then
				n = n + 1
				out[n] = seq
			end
		else
			for p = 1, #seq, width do
				n = n + 1
				out[n] = sub(seq, p, p + width - 1)
			end
		end
	end
	if n == 0 then
		return ""
	end
	return concat(out, "\n") .. "\n"
end

--- format_fasta(records [, width]) -> FASTA text. records is a list of
-- {id=, description=, sequence=} (or one such record). Sequence lines are
-- width characters (default 60; 0 = one line per sequence). Every line ends
-- with "\n"; an empty list gives "".
function M.format_fasta(records, width)
	return format_records(records_of(records, "format_fasta"), width, "format_fasta")
end

--- read_fasta(path [, options]) -> records, as parse_fasta.
function M.read_fasta(path, options)
	if type(path) ~= "string" then
		fail(format("seq_utils.read_fasta: path must be a string, got %s", type(path)))
	end
	local f, err = io.open(path, "rb")
	if not f then
		fail("seq_utils.read_fasta: " .. tostring(err))
	end
	local text = f:read("*a")
	f:close()
	local ok, res = protected(M.parse_fasta, text, options)
	if not ok then
		fail(tostring(res) .. " (in " .. path .. ")")
	end
	return res
end

--- write_fasta(path, records [, width]) writes format_fasta's text to path.
function M.write_fasta(path, records, width)
	if type(path) ~= "string" then
		fail(format("seq_utils.write_fasta: path must be a string, got %s", type(path)))
	end
	local text = format_records(records_of(records, "write_fasta"), width, "write_fasta")
	local f, err = io.open(path, "wb")
	if not f then
		fail("seq_utils.write_fasta: " .. tostring(err))
	end
	f:write(text)
	f:close()
	return true
end

---------------------------------------------------------------------------
-- GC skew
---------------------------------------------------------------------------

local IS_G, IS_C = {}, {}
for b = 0, 255 do
	IS_G[b], IS_C[b] = 0, 0
end
IS_G[71], IS_C[67] = 1, 1

-- gc_in counts G and C in s[a..b] (upper case), sixteen bytes per call.
local function gc_in(s, a, b)
	local g, c = 0, 0
	local i = a
	local G, C = IS_G, IS_C
	while i + 15 <= b do
		local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16 = byte(s, i, i + 15)
		g = g + G[b1] + G[b2] + G[b3] + G[b4] + G[b5] + G[b6] + G[b7] + G[b8]
			+ G[b9] + G[b10] + G[b11] + G[b12] + G[b13] + G[b14] + G[b15] + G[b16]
		c = c + C[b1] + C[b2] + C[b3] + C[b4] + C[b5] + C[b6] + C[b7] + C[b8]
			+ C[b9] + C[b10] + C[b11] + C[b12] + C[b13] + C[b14] + C[b15] + C[b16]
		i = i + 16
	end
	while i <= b do
		local x = byte(s, i)
		g = g + G[x]
		c = c + C[x]
		i = i + 1
	end
	return g, c
end

-- No `a, b = b, a % b`: gopher-lua 1.1.2 assigns multiple locals one by one
-- (`x, y = y, x` leaves both equal).
local function gcd(a, b)
	while b ~= 0 do
		local r = a % b
		a = b
		b = r
	end
	return a
end

--- gc_skew(seq, window [, step]) -> list of windows
--   {start=, stop=, g=, c=, skew=, cumulative=}
-- over the sequence (validated and normalised by bio_compute: white space
-- dropped, upper case). skew = (G - C) / (G + C), 0 when the window has no G
-- or C; cumulative is the running sum of skew (its minimum and maximum hint
-- at the origin and terminus of replication of a bacterial chromosome).
-- step defaults to window. Only full windows are reported: a sequence
-- shorter than window gives an empty list. start and stop are 1-based,
-- inclusive.
function M.gc_skew(seq, window, step)
	local ok, s = protected(bio_compute.validate, seq)
	if not ok then
		fail("seq_utils.gc_skew: " .. tostring(s))
	end
	if not is_integer(window) or window < 1 then
		fail(format("seq_utils.gc_skew: window must be a positive whole number, got %s", tostring(window)))
	end
	if step == nil then
		step = window
	end
	if not is_integer(step) or step < 1 then
		fail(format("seq_utils.gc_skew: step must be a positive whole number, got %s", tostring(step)))
	end
	local n = #s
	local result = {}
	if n < window then
		return result
	end
	-- Count G and C once per block of gcd(window, step) bases; every window
	-- is a run of whole blocks, so the work is O(n) whatever the overlap.
	local bs = gcd(window, step)
	local nblocks = floor(n / bs)
	local pg, pc = { [0] = 0 }, { [0] = 0 }
	local g, c = 0, 0
	for j = 1, nblocks do
		local bg, bcnt = gc_in(s, (j - 1) * bs + 1, j * bs)
		g = g + bg
		c = c + bcnt
		pg[j] = g
		pc[j] = c
	end
	local per_window, per_step = floor(window / bs), floor(step / bs) -- integers on Lua 5.4 too
	local cumulative = 0
	local k = 0
	local j0 = 0
	while j0 + per_window <= nblocks do
		local wg = pg[j0 + per_window] - pg[j0]
		local wc = pc[j0 + per_window] - pc[j0]
		local skew = 0
		if wg + wc > 0 then
			skew = (wg - wc) / (wg + wc)
		end
		cumulative = cumulative + skew
		k = k + 1
		local start = j0 * bs + 1
		result[k] = { start = start, stop = start + window - 1, g = wg, c = wc, skew = skew, cumulative = cumulative }
		j0 = j0 + per_step
	end
	return result
end

---------------------------------------------------------------------------
-- Statistics
---------------------------------------------------------------------------

--- stats(records) -> {count=, total_length=, min_length=, max_length=,
-- mean_length=, n50=, gc_content=} for nucleotide records (a list, or the
-- text of a FASTA file). Lengths exclude white space; gc_content is
-- (G + C) / (A + C + G + T) over all records (bio_compute's definition).
-- n50 is the length L such that records of length >= L hold at least half
-- of all bases. An empty list gives zeros.
function M.stats(records)
	if type(records) == "string" then
		local ok, res = protected(M.parse_fasta, records)
		if not ok then
			fail("seq_utils.stats: " .. tostring(res))
		end
		records = res
	end
	records = records_of(records, "stats")
	local lengths, total = {}, 0
	local a, c, g, t = 0, 0, 0, 0
	for i, r in ipairs(records) do
		if type(r) ~= "table" or type(r.sequence) ~= "string" then
			fail(format("seq_utils.stats: record %d has no sequence string", i))
		end
		local ok, counts = protected(bio_compute.base_counts, r.sequence)
		if not ok then
			fail(format("seq_utils.stats: record %d (%s): %s", i, tostring(r.id), tostring(counts)))
		end
		local len = counts.A + counts.C + counts.G + counts.T + counts.N + counts.other
		lengths[i] = len
		total = total + len
		a, c, g, t = a + counts.A, c + counts.C, g + counts.G, t + counts.T
	end
	local count = #lengths
	local result = { count = count, total_length = total, min_length = 0, max_length = 0, mean_length = 0, n50 = 0,
		gc_content = 0 }
	if count == 0 then
		return result
	end
	sort(lengths, function(x, y)
		return x > y
	end)
	result.max_length = lengths[1]
	result.min_length = lengths[count]
	result.mean_length = total / count
	local acc = 0
	for i = 1, count do
		acc = acc + lengths[i]
		if acc * 2 >= total then
			result.n50 = lengths[i]
			break
		end
	end
	if a + c + g + t > 0 then
		result.gc_content = (g + c) / (a + c + g + t)
	end
	return result
end

-- Like bio_compute: a bare require("seq_utils") makes the global available.
if type(_G) == "table" then
	_G.seq_utils = M
end

return M
