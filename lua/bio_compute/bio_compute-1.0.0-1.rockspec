-- bio_compute: pure-Lua DNA sequence analysis (libbioxen / pylua_bioxen_vm_lib).
--
-- `luarocks make` in this directory installs it with no download.
-- lua/build_repo.sh packs this directory into bio_compute-1.0.0.tar.gz and
-- puts that archive in the .src.rock, which is where source.url points; the
-- offline repository also holds a ready-to-install .all.rock.
rockspec_format = "3.0"
package = "bio_compute"
version = "1.0.0-1"
source = {
   url = "bio_compute-1.0.0.tar.gz",
   dir = "bio_compute-1.0.0",
}
description = {
   summary = "Pure-Lua DNA sequence analysis: GC content, base counts, reverse complement, translation, k-mers",
   detailed = [[
bio_compute analyses IUPAC nucleotide sequences in plain Lua: validation,
base counts, GC content, IUPAC-aware reverse complement, translation with the
standard genetic code in all six frames, k-mer counts, and analyze_sequence()
which returns all of them with a readable tostring(). No C code: it runs on
Lua 5.1-5.4, LuaJIT and gopher-lua, and is written for multi-megabyte
sequences. Loading it also sets the global `bio_compute`.
]],
   license = "MIT",
   labels = { "bioinformatics", "dna", "sequence", "biology" },
}
dependencies = {
   "lua >= 5.1",
}
build = {
   type = "builtin",
   modules = {
      bio_compute = "src/bio_compute.lua",
   },
}
test = {
   type = "command",
   script = "test_bio_compute.lua",
}
