-- seq_utils: FASTA parsing and writing, GC skew windows, assembly statistics.
-- Depends on bio_compute (a real dependency chain for installs).
--
-- `luarocks make` in this directory installs it with no download (bio_compute
-- must be installed or available from a rocks server). lua/build_repo.sh
-- packs this directory into seq_utils-1.0.0.tar.gz for the .src.rock, which
-- is where source.url points; the offline repository also holds a .all.rock.
rockspec_format = "3.0"
package = "seq_utils"
version = "1.0.0-1"
source = {
   url = "seq_utils-1.0.0.tar.gz",
   dir = "seq_utils-1.0.0",
}
description = {
   summary = "FASTA parsing and writing, GC skew windows and assembly statistics in pure Lua",
   detailed = [[
seq_utils parses FASTA text into {id, description, sequence} records, formats
and writes FASTA, computes GC skew (and cumulative skew) over sliding windows
in linear time, and summarises records (count, lengths, N50, GC content).
Pure Lua (5.1-5.4, LuaJIT, gopher-lua); uses bio_compute for validation and
base counting. Loading it also sets the global `seq_utils`.
]],
   license = "MIT",
   labels = { "bioinformatics", "fasta", "sequence", "biology" },
}
dependencies = {
   "lua >= 5.1",
   "bio_compute >= 1.0",
}
build = {
   type = "builtin",
   modules = {
      seq_utils = "src/seq_utils.lua",
   },
}
test = {
   type = "command",
   script = "test_seq_utils.lua",
}
