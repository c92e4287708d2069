-- Timings of bio_compute over a random sequence (1 MB by default).
--
--   lua5.4 lua/bio_compute/bench_bio_compute.lua [megabytes]
--   LUATEST_SCRIPT=lua/bio_compute/bench_bio_compute.lua go test -v -run TestScript ./lua/
--
-- CPU seconds from os.clock(); not a test, nothing is asserted.

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
package.path = script_dir() .. "/src/?.lua;" .. package.path
local bc = require("bio_compute")

local mb = tonumber(arg and arg[1]) or 1
local len = math.floor(mb * 1000000)

local seed = 12345
local letters = { "A", "C", "G", "T" }
local parts = {}
for i = 1, len do
	seed = (seed * 16807) % 2147483647
	parts[i] = letters[seed % 4 + 1]
end
local seq = table.concat(parts)
parts = nil
local lines = {}
for i = 1, len, 60 do
	lines[#lines + 1] = string.sub(seq, i, i + 59)
end
local fasta_body = table.concat(lines, "\n")
lines = nil
collectgarbage()

local function time(name, fn)
	local t0 = os.clock()
	fn()
	print(string.format("%-36s %8.3f s", name, os.clock() - t0))
	collectgarbage()
end

print(string.format("%s, sequence of %d bases, %s", _VERSION, len,
	bc.native_kernels and "native kernels (bio_compute.native)" or "Lua loops"))
time("validate", function() bc.validate(seq) end)
time("validate (60-column FASTA body)", function() bc.validate(fasta_body) end)
time("base_counts", function() bc.base_counts(seq) end)
time("gc_content", function() bc.gc_content(seq) end)
time("reverse_complement", function() bc.reverse_complement(seq) end)
time("translate (frame 1)", function() bc.translate(seq, 1) end)
time("translate (frame -1)", function() bc.translate(seq, -1) end)
time("six_frame_translation", function() bc.six_frame_translation(seq) end)
time("kmer_counts k=8", function() bc.kmer_counts(seq, 8) end)
time("analyze_sequence", function() bc.analyze_sequence(seq) end)
time("analyze_sequence (FASTA body)", function() bc.analyze_sequence(fasta_body) end)
time("compute(1000000)", function() bc.compute(1000000) end)
