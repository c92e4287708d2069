-- libbioxen driver: runs chunks for the host over the frame protocol of
-- docs/protocol.md. Loaded by the bootstrap (see luaproc/driver.go) as
-- the chunk "=[bioxen driver]" and called with (input file, output path,
-- number of re-arm stubs). Works on Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT.
--
-- Chunks never see the real globals: the driver's only global is
-- bioxen_resume in the real _G (see "Interrupts"). Once a call runs, the
-- driver never calls a string method or a global: everything it needs is
-- captured below, so user code cannot break it by changing the environment
-- or the libraries.

local inp, outpath, nstubs = ...

local _G = _G
local type, tostring, tonumber, select, next, rawget = type, tostring, tonumber, select, next, rawget
local setmetatable, error, pcall, xpcall = setmetatable, error, pcall, xpcall
local load, loadstring, setfenv = load, loadstring, setfenv
local str_format, str_sub, str_byte, str_find, str_match = string.format, string.sub, string.byte, string.find, string.match
local str_char = string.char
local tconcat = table.concat
local math_type, floor, huge = math.type, math.floor, math.huge
local io_open, io_type, io_lines, io_popen = io.open, io.type, io.lines, io.popen
local os_execute = os.execute
local real_stdout, real_stderr = io.stdout, io.stderr
local traceback = debug.traceback
local getmt, setmt = debug.getmetatable, debug.setmetatable
local sethook = debug.sethook
local co_resume, co_create, co_yield = coroutine.resume, coroutine.create, coroutine.yield
local os_exit = os.exit
local jit_off = type(rawget(_G, "jit")) == "table" and jit.off or nil

-- LuaJIT's FFI is loaded before anything is snapshotted, so that chunks
-- get this module from package.loaded: loading it a second time (its
-- preload function) starts a new C type state and breaks every cdata made
-- before, the driver's own among them (see "Interrupts").
local ffi
if jit_off then
  local ok, m = pcall(require, "ffi")
  if ok and type(m) == "table" then ffi = m end
end

-- string.gsub with a one-character pattern ("." or "T" or "%a" or
-- "[ACGT]") and a string or plain-table replacement: on LuaJIT with its FFI
-- it is a compiled loop over the bytes (reverse complement of a megabase
-- by gsub(s, ".", comp): 35 ms -> 2-3 ms). Such an item matches exactly
-- the one character it stands on, wherever it is, so the result is each
-- character's own replacement laid end to end; each replacement is asked
-- of the real gsub, once per distinct character present, so classes,
-- "%0"/"%1", numbers and table values come out exactly as it makes them.
-- Anything else, a replacement that would raise an error included, is
-- the real gsub's, by a tail call: its errors and tracebacks are unchanged.
if ffi then
  local gsub, getmetatable_, floor_ = string.gsub, debug.getmetatable, math.floor
  local gethook, jit_status = debug.gethook, rawget(_G, "jit").status
  local s_find, s_byte, s_char = string.find, string.byte, string.char
  local ffi_new, ffi_cast, ffi_copy, ffi_str = ffi.new, ffi.cast, ffi.copy, ffi.string
  local u8p, u8a, i32a = ffi.typeof("const uint8_t *"), ffi.typeof("uint8_t[?]"), ffi.typeof("int32_t[?]")

  -- Whether pattern p is one such item: a plain character, ".", "%x" (not
  -- %b, %f or a back reference) or a whole "[set]" as Lua's classEnd
  -- reads it; no anchor, quantifier, capture or "\0".
  local function one_char(p)
    local n = #p
    if n == 0 or s_find(p, "\0", 1, true) then return false end
    if n == 1 then return not s_find("^$*+?()[]%-", p, 1, true) end
    local c = s_byte(p, 1)
    if c == 37 then
      local d = s_byte(p, 2)
      return n == 2 and d ~= 98 and d ~= 102 and not (d >= 48 and d <= 57)
    end
    if c ~= 91 then return false end
    local i = s_byte(p, 2) == 94 and 3 or 2
    repeat
      if i > n then return false end
      if s_byte(p, i) == 37 then i = i + 1 end
      i = i + 1
    until s_byte(p, i) == 93
    return i == n
  end

  string.gsub = function(...)
    local s, p, r, lim = ...
    local nargs, rt = select("#", ...), type(r)
    if type(s) ~= "string" or #s < 256 or type(p) ~= "string" or nargs > 4
      or not (rt == "string" or rt == "number" or (rt == "table" and getmetatable_(r) == nil))
      or not one_char(p) then
      return gsub(...)
    end
    -- Interpreted (the compiler off, or a hook set: a line hook runs at
    -- every line) its loops are many times slower than the real gsub.
    if gethook() or not jit_status() then return gsub(...) end
    local n = #s
    if lim == nil then
      lim = n + 1
    elseif type(lim) ~= "number" or lim ~= floor_(lim) or lim >= 2 ^ 31 or lim < -2 ^ 31
      or lim * 16 < n then
      -- (a small limit stops the real gsub early, with the rest copied:
      -- counting every byte first was 12-300x slower)
      return gsub(...)
    end
    local sp = ffi_cast(u8p, s)
    local cnt = ffi_new(i32a, 256)
    for i = 0, n - 1 do local b = sp[i]; cnt[b] = cnt[b] + 1 end
    -- Asking the real gsub costs about what 10 bytes of its loop do.
    local distinct = 0
    for b = 0, 255 do if cnt[b] > 0 then distinct = distinct + 1 end end
    if distinct * 16 > n then return gsub(...) end
    -- rlen[b]: length of b's replacement, -1 where b does not match;
    -- tr[b]: b's replacement when it is one byte.
    local rep, rlen, tr = {}, ffi_new(i32a, 256), ffi_new(u8a, 256)
    local single, matches, outlen = true, 0, 0
    for b = 0, 255 do
      tr[b] = b
      local k = cnt[b]
      if k > 0 then
        local ok, v, m = pcall(gsub, s_char(b), p, r)
        -- An interrupt (the interpreter's hook raises "interrupted!" at
        -- the call) is not gsub's error: it goes on, not into the pcall.
        if not ok and type(v) == "string" and s_find(v, "interrupted!$") then error(v, 0) end
        if not ok or type(v) ~= "string" then return gsub(...) end
        if m == 1 then
          local l = #v
          matches, outlen, rlen[b], rep[b] = matches + k, outlen + k * l, l, v
          if l == 1 then tr[b] = s_byte(v) else single = false end
        else
          rlen[b], outlen = -1, outlen + k
        end
      end
    end
    if matches == 0 then return s, 0 end
    local stop = n -- the characters before stop are replaced
    if matches > lim then
      if lim <= 0 then return s, 0 end
      local seen = 0
      outlen = 0
      for i = 0, n - 1 do
        local l = rlen[sp[i]]
        if l < 0 then
          outlen = outlen + 1
        else
          outlen, seen = outlen + l, seen + 1
          if seen == lim then stop = i + 1; break end
        end
      end
      matches, outlen = lim, outlen + n - stop
    end
    if outlen > 2 ^ 30 then return gsub(...) end -- LuaJIT's strings end below 2 GiB
    local o = ffi_new(u8a, outlen)
    local j = stop
    if single then
      for i = 0, stop - 1 do o[i] = tr[sp[i]] end
    else
      j = 0
      for i = 0, stop - 1 do
        local b = sp[i]
        local l = rlen[b]
        if l < 0 or l == 1 then o[j] = tr[b]; j = j + 1
        elseif l > 0 then ffi_copy(o + j, rep[b], l); j = j + l end
      end
    end
    if stop < n then ffi_copy(o + j, sp + stop, n - stop) end
    return ffi_str(o, outlen), matches
  end
end

local FRAME_CHUNK = 1024 * 1024 -- O/E payloads are cut into pieces this big
local FLUSH_AT = 32 * 1024      -- output gathered before an O/E frame goes

local out = io_open(outpath, "wb")
if not out then error("bioxen driver: cannot open " .. tostring(outpath)) end
out:setvbuf("full", 65536)

-- File methods are captured too: user code can reach the FILE* metatable.
local f_write, f_flush, f_read = out.write, out.flush, out.read
local function out_write(...) return f_write(out, ...) end
local function out_flush() return f_flush(out) end

local function send(tag, payload)
  f_write(out, tag, " ", #payload, "\n", payload)
end

-- lua.c puts its whole command line in the global arg; the re-arm stubs
-- after the bootstrap ("-e bioxen_resume()", see "Interrupts") are not the
-- chunks' business, and would make every fresh environment bigger.
local STUB = "bioxen_resume()"
do
  local a = rawget(_G, "arg")
  if type(a) == "table" then
    local drop, nd = {}, 0
    for k, v in next, a do
      if v == STUB and type(k) == "number" then nd = nd + 1; drop[nd] = k end
    end
    local top = nil
    for i = 1, nd do
      local k = drop[i]
      a[k] = nil
      if a[k - 1] == "-e" then a[k - 1] = nil end
      if top == nil or k > top then top = k end
    end
    if top == -1 then
      -- LuaJIT numbers the arguments back from the last one: as if the
      -- stubs had not been there.
      local keys, nk = {}, 0
      for k in next, a do
        if type(k) == "number" and k < 0 then nk = nk + 1; keys[nk] = k end
      end
      local moved = {}
      for i = 1, nk do moved[keys[i] + 2 * nd] = a[keys[i]]; a[keys[i]] = nil end
      for k, v in next, moved do a[k] = v end
    end
  end
end

-- Library snapshot --------------------------------------------------------

-- The pristine globals, taken before any user code runs. Library tables
-- are copied field by field, so a fresh environment is built from the
-- snapshot even if user code later reaches a real library table (through
-- package.loaded, say) and changes it.
local plain_k, plain_v, nplain = {}, {}, 0
local libs, nlibs = {}, 0
for k, v in next, _G do
  if v ~= _G then
    if type(v) == "table" then
      local ks, vs, n = {}, {}, 0
      for k2, v2 in next, v do n = n + 1; ks[n] = k2; vs[n] = v2 end
      nlibs = nlibs + 1
      libs[nlibs] = { name = k, keys = ks, vals = vs, n = n, real = v }
    else
      nplain = nplain + 1
      plain_k[nplain] = k
      plain_v[nplain] = v
    end
  end
end

-- Metatables shared by every environment (strings, files) are put back
-- after each call: their fields, and their own metatables (a chunk that
-- can reach one could give it, or its __index table, a metatable).
local shared, nshared = {}, 0
local function snapshot(t)
  if type(t) ~= "table" then return end
  local saved = {}
  for k, v in next, t do saved[k] = v end
  nshared = nshared + 1
  shared[nshared] = { t, saved, getmt(t) }
end
local strmt = getmt("")
snapshot(strmt)
local filemt = getmt(out)
snapshot(filemt)
if filemt then snapshot(rawget(filemt, "__index")) end

local function restore_shared()
  for i = 1, nshared do
    local t, saved, mt = shared[i][1], shared[i][2], shared[i][3]
    for k in next, t do
      if saved[k] == nil then rawset(t, k, nil) end
    end
    for k, v in next, saved do rawset(t, k, v) end
    if getmt(t) ~= mt then setmt(t, mt) end
  end
end

-- Per-call state ------------------------------------------------------------

local obuf, on, osize = {}, 0, 0 -- stdout gathered for the next O frame
local ebuf, en, esize = {}, 0, 0 -- stderr gathered for the next E frame
local stream = false             -- X flag 4: output frames go at once
-- The host's answers: X flag 16, it answers W and L frames; X flag 32,
-- K frames too. seq numbers the last of those requests.
local host = { answers = false, holds = false, seq = 0 }
local exit_code = nil            -- set by os.exit
-- The collector, its count (KiB) when the call started, the files the
-- sandbox opened during the call, whether the call's environment is
-- fresh, and the growth and number of files past which the call's
-- teardown runs a full collection (one table: the main chunk is at
-- LuaJIT's limit of 200 locals).
local heap = { gc = collectgarbage, start = 0, files = 0, fresh = true, growth = 16384, maxfiles = 64 }
-- os.exit unwinds with EXIT, which the chunk's __close handlers receive
-- (Lua 5.4). Every call meets this one table: its metatable is protected
-- and fields set on it are removed after each call, like the standard
-- files' (a __tostring set by one call ran in a later call that printed
-- the error, and could capture its output).
local EXIT = setmetatable({}, { __tostring = function() return "os.exit" end, __metatable = false })
snapshot(EXIT)

local function send_pieces(tag, s)
  local n = #s
  if n <= FRAME_CHUNK then
    send(tag, s)
  else
    for i = 1, n, FRAME_CHUNK do send(tag, str_sub(s, i, i + FRAME_CHUNK - 1)) end
  end
end

-- The output functions run in the chunk's thread, where an interrupt can
-- raise an error at any instruction (see "Interrupts"): a buffer entry is
-- committed by one assignment, and a buffer is emptied before its frame is
-- sent, so an interrupt may lose output but never sends it twice.
local function flush_out()
  if on > 0 then
    local n = on
    local s = n == 1 and obuf[1] or tconcat(obuf, "", 1, n)
    on = 0
    osize = 0
    send_pieces("O", s)
    for i = 1, n do obuf[i] = nil end
  end
end

local function flush_err()
  if en > 0 then
    local n = en
    local s = n == 1 and ebuf[1] or tconcat(ebuf, "", 1, n)
    en = 0
    esize = 0
    send_pieces("E", s)
    for i = 1, n do ebuf[i] = nil end
  end
end

-- Stale entries past on/en are overwritten by later output.
local function clear_buffers()
  on, osize, en, esize = 0, 0, 0, 0
  obuf, ebuf = {}, {}
end

local function emit_out(s)
  obuf[on + 1] = s; on = on + 1; osize = osize + #s
  if osize >= FLUSH_AT then flush_out(); out_flush() end
end

local function emit_err(s)
  ebuf[en + 1] = s; en = en + 1; esize = esize + #s
  if esize >= FLUSH_AT then flush_err(); out_flush() end
end

-- In stream mode every print and write is sent as soon as it is done.
local function stream_flush()
  if stream then flush_out(); flush_err(); out_flush() end
end

-- Everything gathered so far reaches the host, and the C streams of the
-- interpreter are flushed, so that raw bytes written next come after it.
local function sync_out()
  flush_out(); flush_err()
  out_flush()
  f_flush(real_stdout); f_flush(real_stderr)
end

-- 5.4 returns nil, message, errno when a signal interrupts a read (its
-- SIGINT handler is installed without SA_RESTART).
local EINTR = 4

-- host.ask sends request tag (W, L or K: "<tag> <seq> [<how>] <len>\n"
-- and payload) and reads nothing but the host's one-line answers until the
-- one to it. It returns the rest of that line after "<tag> <seq> ", or nil
-- when the host is gone. An interrupt that cuts the wait short leaves the
-- answer to be skipped here or by the worker.
function host.ask(tag, payload, how)
  local seq = host.seq + 1
  host.seq = seq
  if how then out_write(tag, " ", seq, " ", how, " ", #payload, "\n", payload)
  else out_write(tag, " ", seq, " ", #payload, "\n", payload) end
  out_flush()
  while true do
    local line, _, code = f_read(inp, "*l")
    if line == nil then
      if code ~= EINTR then return nil end -- the host is gone
    else
      local t, n, rest = str_match(line, "^([WLK]) (%d+) (.*)$")
      n = tonumber(n)
      if t == tag and n == seq then return rest end
      if not n or n >= seq then
        f_write(real_stderr, "bioxen driver: expected the answer to ", tag, ", got: ", line, "\n")
        out_flush()
        os_exit(1)
      end
    end
  end
end

-- Before a child process starts (os.execute, io.popen): sync_out, and with
-- X flag 16 a W frame, whose answer says that the host has taken every
-- frame before it and the raw output written so far. Only then may the
-- child write raw bytes: the host cannot take them for raw output that
-- belongs before an earlier frame, or put them before a frame sent
-- earlier.
local function sync_child()
  sync_out()
  if host.answers then host.ask("W", "") end
end

-- table.pack (5.2+) takes the values where they are; the vararg function
-- of 5.1 copies them twice, and the results of a chunk returning ~500,000
-- values overflowed the stack.
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

-- print and write take many arguments from their pack(...): select(i, ...)
-- copies the arguments after i (print(table.unpack(t)) was quadratic).
local MANY_ARGS = 16

-- io.write's number format: integers as %d, floats as %.14g. The error
-- level points at the user's call: write_arg <- write_to <- write <- user.
local function write_arg(emit, i, v)
  local tv = type(v)
  if tv == "string" then
    emit(v)
  elseif tv == "number" then
    if math_type and math_type(v) == "integer" then emit(str_format("%d", v))
    else emit(str_format("%.14g", v)) end
  else
    error(str_format("bad argument #%d to 'write' (string expected, got %s)", i, tv), 4)
  end
end

-- Fake standard files ---------------------------------------------------------

local fakes = setmetatable({}, { __mode = "k" })
local file_methods = {}
local file_mt = {
  __index = file_methods,
  __metatable = false,
  __name = "FILE*",
  __tostring = function(f) return "file (" .. (fakes[f] or "?") .. ")" end,
}

local function new_fake(kind)
  local f = setmetatable({}, file_mt)
  fakes[f] = kind
  return f
end

local function check_fake(f, what)
  if fakes[f] == nil then
    error(str_format("bad argument #1 to '%s' (FILE* expected, got %s)", what, type(f)), 3)
  end
  return fakes[f]
end

local function write_to(f, ...)
  local kind = fakes[f]
  local emit
  if kind == "stdout" then emit = emit_out
  elseif kind == "stderr" then emit = emit_err
  else return nil end
  local n = select("#", ...)
  local args = n > MANY_ARGS and pack(...)
  for i = 1, n do
    local v
    if args then v = args[i] else v = (select(i, ...)) end
    write_arg(emit, i, v)
  end
  stream_flush()
  return f
end

function file_methods.write(f, ...)
  check_fake(f, "write")
  return (write_to(f, ...))
end

-- read on the standard input, which is empty (a chunk gets no input):
-- each format reads as at the end of a file, "a" an empty string and the
-- others nil, which ends the results (g_read). Only the first format was
-- read: io.read("a", "a") gave one "".
local function read_eof(...)
  local n = select("#", ...)
  if n == 0 then return nil end
  local fmts, out = pack(...), {}
  for i = 1, n do
    local fmt, c = fmts[i], nil
    if type(fmt) == "string" then
      c = str_sub(fmt, 1, 1) == "*" and str_sub(fmt, 2, 2) or str_sub(fmt, 1, 1)
      if c ~= "n" and c ~= "l" and c ~= "L" and c ~= "a" then c = false end
    elseif type(fmt) ~= "number" then
      c = false
    end
    -- (called by a tail call from read or io.read: level 2 is the chunk)
    if c == false then error("bad argument #" .. i .. " to 'read' (invalid format)", 2) end
    if c ~= "a" then return unpack(out, 1, i) end
    out[i] = ""
  end
  return unpack(out, 1, n)
end

function file_methods.read(f, ...)
  if check_fake(f, "read") ~= "stdin" then return nil, "Bad file descriptor", 9 end
  return read_eof(...)
end

function file_methods.lines(f)
  check_fake(f, "lines")
  return function() return nil end
end

function file_methods.flush(f) check_fake(f, "flush"); return f end
function file_methods.setvbuf(f) check_fake(f, "setvbuf"); return true end
function file_methods.seek(f) check_fake(f, "seek"); return nil, "Illegal seek", 29 end
function file_methods.close(f)
  check_fake(f, "close")
  return nil, "cannot close standard file"
end

local fake_stdout, fake_stderr, fake_stdin = new_fake("stdout"), new_fake("stderr"), new_fake("stdin")
-- Every environment shares them: fields a chunk rawsets on them are
-- removed after each call, like the shared metatables'.
snapshot(fake_stdout); snapshot(fake_stderr); snapshot(fake_stdin)
local cur_out, cur_in = fake_stdout, fake_stdin

-- Overrides ---------------------------------------------------------------------

local function lprint(...)
  local n = select("#", ...)
  local args = n > MANY_ARGS and pack(...)
  for i = 1, n do
    local v
    if args then v = args[i] else v = (select(i, ...)) end
    local s = tostring(v)
    if type(s) ~= "string" then error("'tostring' must return a string to 'print'", 2) end
    if i > 1 then emit_out("\t") end
    emit_out(s)
  end
  emit_out("\n")
  stream_flush()
end

-- The io and os overrides, in one table (the main chunk is near
-- LuaJIT's limit of 200 locals).
local ov = {}

function ov.io_write(...)
  if fakes[cur_out] then return (write_to(cur_out, ...)) end
  return cur_out:write(...)
end

function ov.io_read(...)
  if fakes[cur_in] then return file_methods.read(cur_in, ...) end
  return cur_in:read(...)
end

-- The io.open of the chunks: the real one, or the sandbox's (see
-- "Sandbox"), which io.input, io.output and io.lines go through as well.
-- sb: the sandbox's state (see "Sandbox"), one table to spare locals: on,
-- open (its io.open), check (path -> resolved path, or nil and message),
-- ro and nro (the read-only directories),
-- lua and c (its searchers), configured, configure.
local sb = { open = io_open, ro = {}, nro = 0, f_lines = out.lines, f_close = out.close, getinfo = debug.getinfo }

-- sb.open_error raises the error of io.input(name) or io.output(name)
-- (what: "input", "output") that could not open it, as the interpreter
-- words it, at the caller's line. err is "<path>: <reason>".
function sb.open_error(what, name, err)
  if setfenv then error("bad argument #1 to '" .. what .. "' (" .. err .. ")", 3) end
  error("cannot open file '" .. name .. "' (" .. (str_match(err, ".*: (.-)$") or err) .. ")", 3)
end

function ov.io_output(f)
  if f == nil then return cur_out end
  if type(f) == "string" then
    local nf, err = sb.open(f, "w")
    if not nf then sb.open_error("output", f, err) end
    cur_out = nf
  else
    cur_out = f
  end
  return cur_out
end

function ov.io_input(f)
  if f == nil then return cur_in end
  if type(f) == "string" then
    local nf, err = sb.open(f, "r")
    if not nf then sb.open_error("input", f, err) end
    cur_in = nf
  else
    cur_in = f
  end
  return cur_in
end

-- sb.rethrow raises again error e of a call made in pcall, at level
-- (as error's: 1 is the caller of rethrow, 2 its caller...): called from
-- the driver, the error named the driver's line. An interrupt, running
-- out of memory and os.exit are raised as they are.
function sb.rethrow(e, level)
  if type(e) == "string" and (e == "not enough memory" or str_find(e, "interrupted!$")) or exit_code ~= nil then
    error(e, 0)
  end
  error(e, level + 1)
end

function ov.lio_lines(name, ...)
  if name == nil then
    if fakes[cur_in] then return function() return nil end end
    return cur_in:lines(...)
  end
  if sb.check then
    -- (a name that is no string is the caller's error, not str_find's)
    local tp = type(name)
    if tp == "number" then name = tostring(name)
    elseif tp ~= "string" then error("bad argument #1 to 'lines' (string expected, got " .. tp .. ")", 2) end
    local r, err = sb.check(name)
    if not r then error(err, 2) end
    name = r
    heap.files = heap.files + 1
    if sb.nofollow or host.holds then
      -- Opened as io.open opens it (no link followed); closed at the
      -- end, as io.lines(name) closes its file.
      local f, oerr = sb.openr(name, "r")
      if not f then
        if setfenv then error("bad argument #1 to 'lines' (" .. oerr .. ")", 2) end
        error("cannot open file '" .. name .. "' (" .. str_sub(oerr, #name + 3) .. ")", 2) -- Lua 5.2+
      end
      -- At the end it returns nothing, and a call after that is an
      -- error at the caller's line, as io.lines(name)'s iterator. The
      -- real iterator (and f:lines) run in pcall, and their errors are
      -- raised again at the caller's line.
      local close, closed = sb.f_close, false
      local ok, it = pcall(sb.f_lines, f, ...)
      if not ok then
        close(f)
        sb.rethrow(it, 2)
      end
      -- step is iter's tail call: PUC Lua 5.1 counts a "(tail call)"
      -- level between it and the chunk.
      local level = (setfenv and not jit_off) and 3 or 2
      local function step(ok2, ...)
        if not ok2 then sb.rethrow((...), level) end
        if (...) == nil then
          closed = true
          close(f)
          return
        end
        return ...
      end
      local function iter()
        if closed then error(jit_off and "attempt to use a closed file" or "file is already closed", 2) end
        return step(pcall(it))
      end
      -- (Lua 5.4: the file is the generic for's to-be-closed value)
      if LUA54 then return iter, nil, nil, f end
      return iter
    end
  end
  local ok, a, b, c, d = pcall(io_lines, name, ...)
  if not ok then sb.rethrow(a, 2) end
  if LUA54 then return a, b, c, d end
  return a
end

function ov.lio_close(f)
  if f == nil then f = cur_out end
  if fakes[f] then return nil, "cannot close standard file" end
  return f:close()
end

function ov.lio_type(f)
  if fakes[f] then return "file" end
  return io_type(f)
end

function ov.lio_popen(...)
  sync_child()
  return io_popen(...)
end

function ov.los_execute(...)
  if select("#", ...) == 0 then return os_execute() end
  sync_child()
  local r = pack(os_execute(...))
  f_flush(real_stdout); f_flush(real_stderr)
  send("S", "")
  out_flush()
  return unpack(r, 1, r.n)
end

function ov.los_exit(code)
  local c
  if code == nil or code == true then c = 0
  elseif code == false then c = 1
  elseif type(code) == "number" and code == floor(code) then
    c = code
    if c > 2147483647 then c = 2147483647 elseif c < -2147483648 then c = -2147483648 end
  else
    error("bad argument #1 to 'exit' (number expected, got " .. type(code) .. ")", 2)
  end
  exit_code = c
  error(EXIT, 0)
end

-- os.exit unwinds with an error, and so does running out of memory (the
-- interpreter's RLIMIT_AS is the VM's memory limit): these wrappers keep
-- user code from catching either, so a chunk that retries after a memory
-- error still ends with it (and the host reports ErrNoMem).
local OOM = "not enough memory"

local function rethrow(ok, ...)
  if exit_code ~= nil then error(EXIT, 0) end
  if not ok and ... == OOM then error(OOM, 0) end
  return ok, ...
end

local function lpcall(f, ...)
  return rethrow(pcall(f, ...))
end

local function lxpcall(f, msgh, ...)
  return rethrow(xpcall(f, function(e)
    if exit_code ~= nil or e == OOM then return e end
    return msgh(e)
  end, ...))
end

-- The driver's own coroutine (the worker that reads requests): user code
-- can only meet it in a __gc finalizer, and must not resume or close it.
local driver_co

local function lresume(co, ...)
  if type(co) ~= "thread" then
    -- As the interpreter says it (co_resume's message would name the driver).
    local got = _VERSION == "Lua 5.4" and ", got " .. (co == nil and "no value" or type(co)) or ""
    error("bad argument #1 to 'resume' (coroutine expected" .. got .. ")", 2)
  end
  if co == driver_co then return false, "cannot resume non-suspended coroutine" end
  return rethrow(co_resume(co, ...))
end

local lclose -- coroutine.close (Lua 5.4)
do
  local co_close, co_status = coroutine.close, coroutine.status
  if co_close then
    -- Its errors are raised here, as the interpreter words them: from
    -- co_close they named the driver's line and local.
    lclose = function(...)
      local co = ...
      if type(co) ~= "thread" then
        error("bad argument #1 to 'close' (thread expected, got " ..
          (select("#", ...) == 0 and "no value" or type(co)) .. ")", 2)
      end
      local st = co == driver_co and "running" or co_status(co)
      if st == "running" or st == "normal" then error("cannot close a " .. st .. " coroutine", 2) end
      return rethrow(co_close(co))
    end
  end
end

-- Loading code and modules ---------------------------------------------------
--
-- Code loaded by the chunk (load, loadstring, loadfile, dofile, require)
-- runs in the chunk's environment, as it would in the standalone
-- interpreter, and require works on the environment's own package table:
-- its path, cpath, preload, searchers and loaded.

local cur_env, cur_pkg -- the running call's environment and package table
local real_loadfile, real_loadlib = loadfile, package and package.loadlib
local real_searchpath = package and package.searchpath
local str_gsub, str_gmatch = string.gsub, string.gmatch
local LUA54 = _VERSION == "Lua 5.4"

-- reraise is rethrow for load's results: load runs a reader function in
-- a protected call of its own, which would turn os.exit or running out of
-- memory into load's nil, message.
local function reraise(f, ...)
  if exit_code ~= nil then error(EXIT, 0) end
  if f == nil and ... == OOM then error(OOM, 0) end
  return f, ...
end

local lload
do
local function lload_any(chunk, name, mode, ...)
  if setfenv then
    local f, err
    if type(chunk) == "string" then f, err = loadstring(chunk, name)
    else f, err = load(chunk, name) end
    if f then setfenv(f, cur_env) end
    return f, err
  end
  if select("#", ...) > 0 then return load(chunk, name, mode, ...) end
  return load(chunk, name, mode, cur_env)
end

lload = function(...)
  return reraise(lload_any(...))
end
end

local function lloadstring(s, name)
  return lload(s, name)
end

local function lloadfile(file, mode, ...)
  if setfenv then
    local f, err = real_loadfile(file)
    if f then setfenv(f, cur_env) end
    return f, err
  end
  if select("#", ...) > 0 then return real_loadfile(file, mode, ...) end
  return real_loadfile(file, mode, cur_env)
end

local function ldofile(file)
  local f, err = lloadfile(file)
  if not f then error(err, 2) end
  return f()
end

local function searchpath(name, path)
  if real_searchpath then return real_searchpath(name, path) end
  name = str_gsub(name, "%.", "/")
  local msg, n = {}, 0
  for template in str_gmatch(path, "[^;]+") do
    local file = str_gsub(template, "%?", function() return name end)
    local f = io_open(file, "r")
    if f then f:close(); return file end
    n = n + 1; msg[n] = "\n\tno file '" .. file .. "'"
  end
  return nil, tconcat(msg, "", 1, n)
end

local function pkg_string(field)
  local v = cur_pkg[field]
  if type(v) ~= "string" then error("'package." .. field .. "' must be a string", 3) end
  return v
end

local function searcher_preload(name)
  local preload = cur_pkg.preload
  if type(preload) ~= "table" then error("'package.preload' must be a table", 2) end
  local f = preload[name]
  if f == nil then return "\n\tno field package.preload['" .. name .. "']" end
  return f, ":preload:"
end

local function searcher_lua(name)
  local file, err = searchpath(name, pkg_string("path"))
  if not file then return err end
  local f, lerr = lloadfile(file)
  if not f then
    error(str_format("error loading module '%s' from file '%s':\n\t%s", name, file, tostring(lerr)), 2)
  end
  return f, file
end

local function open_c(name, file, modname)
  local mark = str_find(modname, "-", 1, true)
  if mark then modname = str_sub(modname, mark + 1) end
  local f, lerr = real_loadlib(file, "luaopen_" .. str_gsub(modname, "%.", "_"))
  if not f then
    error(str_format("error loading module '%s' from file '%s':\n\t%s", name, file, tostring(lerr)), 3)
  end
  return f, file
end

local function searcher_c(name)
  local file, err = searchpath(name, pkg_string("cpath"))
  if not file then return err end
  return open_c(name, file, name)
end

local function searcher_croot(name)
  local dot = str_find(name, ".", 1, true)
  if not dot then return nil end
  local file, err = searchpath(str_sub(name, 1, dot - 1), pkg_string("cpath"))
  if not file then return err end
  local f, lerr = real_loadlib(file, "luaopen_" .. str_gsub(name, "%.", "_"))
  if not f then return "\n\tno module '" .. name .. "' in file '" .. file .. "'" end
  return f, file
end

local searchers_key = (package and package.searchers) and "searchers" or "loaders"

local function lrequire(name)
  if type(name) == "number" then name = tostring(name) end
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local loaded = cur_pkg.loaded
  if type(loaded) ~= "table" then error("'package.loaded' must be a table", 2) end
  local v = loaded[name]
  if v then return v end
  local searchers = cur_pkg[searchers_key]
  if type(searchers) ~= "table" then error("'package." .. searchers_key .. "' must be a table", 2) end
  local msg, n = {}, 0
  local i = 1
  while true do
    local s = searchers[i]
    if s == nil then
      error("module '" .. name .. "' not found:" .. tconcat(msg, "", 1, n), 2)
    end
    -- (in pcall: a searcher's error named this line, where the
    -- interpreter's require, a C function, gives none)
    local ok, loader, extra = pcall(s, name)
    if not ok then error(loader, 0) end
    if type(loader) == "function" then
      local r = loader(name, extra)
      if r ~= nil then loaded[name] = r end
      if loaded[name] == nil then loaded[name] = true end
      if LUA54 then return loaded[name], extra end
      return loaded[name]
    elseif type(loader) == "string" then
      n = n + 1; msg[n] = loader
    end
    i = i + 1
  end
end

-- The pristine package.loaded and package.preload.
local loaded_k, loaded_v, nloaded = {}, {}, 0
local preload_k, preload_v, npreload = {}, {}, 0
local lib_name = {} -- real library table -> its global name
for i = 1, nlibs do lib_name[libs[i].real] = libs[i].name end
if type(package) == "table" then
  if type(package.loaded) == "table" then
    for k, v in next, package.loaded do
      nloaded = nloaded + 1; loaded_k[nloaded] = k; loaded_v[nloaded] = v
    end
  end
  if type(package.preload) == "table" then
    for k, v in next, package.preload do
      if k == "ffi" and ffi then v = function() return ffi end end
      npreload = npreload + 1; preload_k[npreload] = k; preload_v[npreload] = v
    end
  end
end

-- install_package gives env's package table its own loaded (pointing at
-- env's library copies), preload and searchers, and returns it.
local function install_package(env)
  local pkg = env.package
  if type(pkg) ~= "table" then return nil end
  local loaded = {}
  for i = 1, nloaded do
    local v = loaded_v[i]
    if v == _G then v = env
    elseif lib_name[v] then v = env[lib_name[v]]
    elseif sb.on then v = nil end -- ffi, jit.* ...: not for the sandbox
    loaded[loaded_k[i]] = v
  end
  pkg.loaded = loaded
  local preload = {}
  if not sb.on then
    for i = 1, npreload do preload[preload_k[i]] = preload_v[i] end
  end
  pkg.preload = preload
  if sb.on then
    pkg[searchers_key] = { searcher_preload, sb.lua, sb.c }
  else
    pkg[searchers_key] = { searcher_preload, searcher_lua, searcher_c, searcher_croot }
  end
  return pkg
end

-- Environments --------------------------------------------------------------------

-- The snapshot with the driver's overrides in place: what every new
-- environment starts from.
local function override(libname, key, value)
  for i = 1, nlibs do
    local lib = libs[i]
    if lib.name == libname then
      for j = 1, lib.n do
        if lib.keys[j] == key then lib.vals[j] = value; return end
      end
      lib.n = lib.n + 1
      lib.keys[lib.n], lib.vals[lib.n] = key, value
      return
    end
  end
end
for i = 1, nplain do
  local k = plain_k[i]
  if k == "print" then plain_v[i] = lprint
  elseif k == "pcall" then plain_v[i] = lpcall
  elseif k == "xpcall" then plain_v[i] = lxpcall
  elseif k == "load" then plain_v[i] = lload
  elseif k == "loadstring" then plain_v[i] = lloadstring
  elseif k == "loadfile" then plain_v[i] = lloadfile
  elseif k == "dofile" then plain_v[i] = ldofile
  elseif k == "require" then plain_v[i] = lrequire end
end
override("io", "write", ov.io_write); override("io", "read", ov.io_read)
override("io", "lines", ov.lio_lines); override("io", "output", ov.io_output)
override("io", "input", ov.io_input); override("io", "close", ov.lio_close)
override("io", "type", ov.lio_type); override("io", "popen", ov.lio_popen)
override("io", "stdout", fake_stdout); override("io", "stderr", fake_stderr)
override("io", "stdin", fake_stdin)
override("os", "exit", ov.los_exit); override("os", "execute", ov.los_execute)
override("coroutine", "resume", lresume)
if lclose then override("coroutine", "close", lclose) end

-- Sandbox ---------------------------------------------------------------------------
--
-- The host's P frame (see docs/protocol.md) says whether the chunks run in
-- the sandbox of docs/sandbox.md. In the sandbox the snapshot keeps only
-- the allow-listed globals and library fields before make_env is
-- generated, so no environment ever holds anything else, and file access
-- and code loading go through the checks below.

do
local real_collectgarbage, f_close = collectgarbage, out.close
local SB_GLOBALS = {}
for w in str_gmatch("assert error ipairs next pairs pcall print rawequal rawget rawset select " ..
  "setmetatable getmetatable tonumber tostring type unpack xpcall _VERSION module require " ..
  "load loadstring loadfile dofile collectgarbage", "%S+") do SB_GLOBALS[w] = true end
local function set_of(words)
  local t = {}
  for w in str_gmatch(words, "%S+") do t[w] = true end
  return t
end
local SB_LIBS = {
  string = set_of("byte char find format gmatch gsub len lower match rep reverse sub upper"),
  table = true, math = true, coroutine = true,
  os = set_of("clock date difftime time exit"),
  io = set_of("write read lines stdout stderr stdin output input type flush close open"),
  debug = set_of("traceback"),
  -- searchers is what 5.2+ calls loaders.
  package = set_of("path cpath loaded preload loaders searchers"),
}

local sb_cwd = "/"
local sb_allowed, nallowed = {}, 0 -- io.open, loadfile, dofile (and require)
local sb_modules, nmodules = {}, 0 -- require only
local DENIED = ": access outside the VM's allowed directories"
local BINARY = "attempt to load a binary chunk (mode is 't')"

-- normalize makes p absolute against the host's working directory and
-- drops "." components. A path with a ".." component is refused outright:
-- without the file system's help, ".." after a symbolic link cannot be
-- resolved as the kernel would.
local function normalize(p)
  if str_find(p, "\0", 1, true) then return nil end
  if str_byte(p, 1) ~= 47 then p = sb_cwd .. "/" .. p end
  local parts, n = {}, 0
  for c in str_gmatch(p, "[^/]+") do
    if c == ".." then return nil end
    if c ~= "." then n = n + 1; parts[n] = c end
  end
  return "/" .. tconcat(parts, "/", 1, n)
end

local function under(p, dirs, n)
  for i = 1, n do
    local d = dirs[i]
    if d == "/" or p == d or str_sub(p, 1, #d + 1) == d .. "/" then return true end
  end
  return false
end

local function path_arg(p, what)
  local tp = type(p)
  if tp == "number" then return tostring(p) end
  if tp ~= "string" then
    error(str_format("bad argument #1 to '%s' (string expected, got %s)", what, tp == "nil" and "no value" or tp), 3)
  end
  return p
end

-- On LuaJIT with its FFI, realpath(3) resolves symbolic links, so that a
-- link inside an allowed directory cannot lead out of it; a file that does
-- not exist yet is resolved by the host (L frames, X flag 16), else looked
-- for in its resolved directory. Elsewhere the host resolves (X flag 16).
local realpath, host_realpath
if ffi then
  pcall(function()
    ffi.cdef [[
      char *bx_realpath(const char *, char *) __asm__("realpath");
      void bx_free(void *) __asm__("free");
    ]]
    local C = ffi.C
    local rp, free, ffi_string = C.bx_realpath, C.bx_free, ffi.string
    local function real1(p)
      local c = rp(p, nil)
      if c == nil then return nil end
      local s = ffi_string(c)
      free(c)
      return s
    end
    realpath = function(p)
      local r = real1(p)
      if r then return r end
      -- A file that does not exist yet, or a dangling link (opening it
      -- would create its target): the host resolves it, following the
      -- link (core.RealPath).
      if host.answers then return host_realpath(p) end
      local dir, base = str_match(p, "^(.*)/([^/]+)$")
      if not dir then return nil end
      if dir == "" then dir = "/" end
      local rd = real1(dir)
      if not rd then return p end -- no such directory: opening fails anyway
      if rd == "/" then return "/" .. base end
      return rd .. "/" .. base
    end
  end)
end

-- On LuaJIT with its FFI, a checked path is taken hold of without
-- following any symbolic link (openat2 with O_PATH and
-- RESOLVE_NO_SYMLINKS, Linux 5.6+), and the FILE* comes from opening that
-- descriptor through /proc/self/fd, which leads to the very file: a name
-- swapped for a link between the check and the open cannot lead out of
-- the allowed directories. The mode is read by sb.open_mode.
-- sb.nofollow stays nil when openat2 or /proc/self/fd is not usable here
-- (a seccomp filter, an old kernel): the host holds the file then (K
-- frames, X flag 32), else the open is by name (see docs/sandbox.md).
if ffi then
  pcall(function()
    ffi.cdef [[
      struct bx_open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };
      long bx_syscall(long, ...) __asm__("syscall");
      int bx_close(int) __asm__("close");
      char *bx_strerror(int) __asm__("strerror");
      struct bx_nf_sigset { unsigned long val[16]; };
      int bx_nf_sigprocmask(int, const struct bx_nf_sigset *, struct bx_nf_sigset *) __asm__("sigprocmask");
    ]]
    local C = ffi.C
    local O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC, O_PATH = 1, 2, 64, 128, 524288, 2097152
    local how = ffi.new("struct bx_open_how")
    local function open_nofollow(path, flags)
      -- mode 0666 with O_CREAT (openat2 refuses one without); 4 is
      -- RESOLVE_NO_SYMLINKS.
      how.flags, how.mode, how.resolve = flags + O_CLOEXEC, floor(flags / O_CREAT) % 2 == 1 and 438 or 0, 4
      local fd = tonumber(C.bx_syscall(437, ffi.cast("int", -100), path, how, ffi.cast("size_t", 24)))
      if fd < 0 then return nil, ffi.errno() end
      return fd
    end
    -- An interrupt can come at any instruction: a descriptor it leaves
    -- open is closed by the next reopen (set to nil before it is closed,
    -- so that no number is ever closed twice). A SIGINT during the
    -- openat2 raised before the number was recorded, so SIGINT is also
    -- blocked from before the openat2 until the descriptor is closed
    -- (sb.nf_block, sb.nf_restore): a SIGINT that comes then is taken
    -- when the mask is restored, and raises once the FILE* is a Lua
    -- value, which the collector closes.
    local pending
    local sigint, oldmask = ffi.new("struct bx_nf_sigset"), ffi.new("struct bx_nf_sigset")
    sigint.val[0] = 2 -- SIGINT (2) is bit 1
    sb.nf_block = function() C.bx_nf_sigprocmask(0, sigint, oldmask) end -- SIG_BLOCK
    sb.nf_restore = function() C.bx_nf_sigprocmask(2, oldmask, nil) end -- SIG_SETMASK
    -- A file made here under a umask that takes the owner's read or
    -- write bit away (0277) could not be reopened for writing (the open
    -- through /proc checks its mode, where fopen does not for a file it
    -- creates): it is readable and writable by its owner until reopened,
    -- then gets its mode. statx (glibc 2.28+) reads the mode the kernel
    -- gave it (the umask, or a default ACL).
    local owner_rw
    pcall(function()
      ffi.cdef [[
        struct bx_statx { uint32_t mask, blksize; uint64_t attributes; uint32_t nlink, uid, gid; uint16_t mode, spare; uint64_t rest[28]; };
        int bx_statx(int, const char *, int, unsigned int, struct bx_statx *) __asm__("statx");
        int bx_fchmod(int, unsigned int) __asm__("fchmod");
      ]]
      local statx, fchmod, st = C.bx_statx, C.bx_fchmod, ffi.new("struct bx_statx")
      owner_rw = function(fd)
        -- AT_EMPTY_PATH (4096), STATX_MODE (2); the mode's permission bits
        if statx(fd, "", 4096, 2, st) ~= 0 then return nil end
        local m = st.mode % 4096
        if floor(m / 128) % 4 == 3 or fchmod(fd, m - m % 512 + 384 + m % 128) ~= 0 then return nil end
        return function() fchmod(fd, m) end
      end
    end)
    local function reopen(fd, mode, made)
      if pending then
        local p = pending
        pending = nil
        C.bx_close(p)
      end
      pending = fd
      local restore = made and owner_rw and owner_rw(fd)
      local f, err, code = io_open("/proc/self/fd/" .. fd, mode)
      if restore then restore() end
      pending = nil
      C.bx_close(fd)
      return f, err, code
    end
    local probe = open_nofollow("/dev/null", O_PATH)
    if not probe or not reopen(probe, "r") then return end
    local gethook = debug.gethook
    sb.nofollow = function(r, mode)
      -- An interrupt that came before SIGINT is blocked below but whose
      -- hook has not run yet (compiled code runs no hook) would raise in
      -- the middle, with a descriptor not yet recorded: it is raised
      -- here, as lua.c's hook raises it, before anything is opened.
      if gethook() then
        sethook()
        error("interrupted!", 0)
      end
      local c, plus, excl = sb.open_mode(mode)
      if not c then return io_open(r, mode) end
      -- The file is opened once, by the reopen, with the mode (a named
      -- pipe opened twice for reading waited for a second writer after
      -- the first had written and gone; a device ran its open twice): the
      -- openat2 only takes hold of it (O_PATH), or, when it does not exist
      -- and the mode creates it, creates it (O_EXCL: a new regular file;
      -- one made meanwhile by another process is taken hold of instead).
      sb.nf_block()
      local fd, errno, made
      for _ = 1, 100 do
        fd, errno = open_nofollow(r, O_PATH)
        if fd then
          if excl then C.bx_close(fd); fd, errno = nil, 17 end -- EEXIST
          break
        end
        if errno ~= 2 or c == "r" then break end -- ENOENT
        fd, errno = open_nofollow(r, (plus and O_RDWR or O_WRONLY) + O_CREAT + O_EXCL)
        made = fd ~= nil
        if fd or errno ~= 17 or excl then break end
      end
      if not fd then
        sb.nf_restore()
        return nil, r .. ": " .. ffi.string(C.bx_strerror(errno)), errno
      end
      -- Reopening truncates a "w" file, or a new one, still empty.
      local f, err, code = reopen(fd, c .. (plus and "+" or ""), made)
      sb.nf_restore()
      -- (its message names /proc/self/fd/N)
      if not f then err = r .. ": " .. ffi.string(C.bx_strerror(code)) end
      return f, err, code
    end
  end)
end

-- unhex decodes the host's hex-encoded strings.
function host.unhex(hex)
  return (str_gsub(hex, "%x%x", function(h) return str_char(tonumber(h, 16)) end))
end

-- Without the FFI (Lua 5.1-5.4) the host resolves symbolic links: an L
-- frame carries the path, and the host answers with one line
-- "L <seq> <hex of the resolved path>" ("-" when it cannot say). Only with
-- X flag 16 (a host that answers).
function host_realpath(p)
  if not host.answers then return p end
  if #p > 4096 then return nil end -- PATH_MAX: no file has such a name
  local hex = host.ask("L", p)
  if hex == nil or hex == "-" or not str_find(hex, "^%x*$") then return nil end
  return host.unhex(hex)
end

-- With X flag 32 (Lua 5.1-5.4, and LuaJIT where its own way is not
-- usable) the host takes hold of a checked path without following any
-- symbolic link (openat2, RESOLVE_NO_SYMLINKS), creating it when the mode
-- does and it does not exist: a K frame carries the path and how it will
-- be opened (1: create, 2: update, 4: exclusive), and the host answers
-- "K <seq> <pid> <n>", after which the file is opened, once, through
-- /proc/<pid>/fd/<n> (which leads to the very file whatever its name has
-- become), or "K <seq> - <errno> <hex of the message>". The host closes
-- its descriptor when the next frame comes.
-- host.usable tells, once per interpreter, whether it may open what the
-- host holds: a security module may refuse it /proc/<host pid>/fd. If not,
-- X flag 32 is ignored from then on and files are opened by name, as
-- where the host cannot hold them.
function host.usable()
  if host.proc_ok == nil then
    local pid, n = str_match(host.ask("K", "/dev/null", 0) or "", "^(%d+) (%d+)$")
    local f = pid and io_open("/proc/" .. pid .. "/fd/" .. n, "r")
    if f then f:close() end
    host.proc_ok = f and true or false
  end
  host.holds = host.proc_ok
  return host.proc_ok
end

function host.open(r, c, plus, excl)
  local how = (c ~= "r" and 1 or 0) + (plus and 2 or 0) + (excl and 4 or 0)
  local rest = host.ask("K", r, how)
  if rest == nil then return nil, r .. ": the host is gone", 5 end -- EIO
  local pid, n = str_match(rest, "^(%d+) (%d+)$")
  if not pid then
    local errno, hex = str_match(rest, "^%- (%d+) (%x*)$")
    errno = tonumber(errno) or 5
    return nil, r .. ": " .. host.unhex(hex or ""), errno
  end
  local proc = "/proc/" .. pid .. "/fd/" .. n
  -- Opening truncates a "w" file, or a new one, still empty.
  local f, err, code = io_open(proc, c .. (plus and "+" or ""))
  -- (its message names /proc/<pid>/fd/<n>)
  if not f then err = r .. str_sub(err, #proc + 1) end
  return f, err, code
end

-- resolve returns the absolute path of p when it lies in an allowed
-- directory, else nil and the sandbox's message.
-- A read-only directory (sb.ro: the package environments, shared by every
-- VM that uses them) is readable, never writable: with write set such a
-- path is refused too.
local function resolve(p, write)
  local r = normalize(p)
  if r and realpath then r = realpath(r) elseif r then r = host_realpath(r) end
  if r and under(r, sb_allowed, nallowed) then return r end
  if r and under(r, sb.ro, sb.nro) then
    if not write then return r end
    return nil, p .. ": the VM's package environments are read-only"
  end
  return nil, p .. DENIED
end

-- sb.open_mode reads an io.open mode as the interpreter and the C library
-- do: it returns the mode's first character ("r", "w" or "a"), whether it
-- updates ("+") and whether it is exclusive ("x", glibc's), or nil for a
-- mode that opens nothing (Lua 5.2+ raise "invalid mode" before they open
-- anything; glibc refuses a first character other than r, w and a, and
-- looks at six more at most, before any "\0").
function sb.open_mode(mode)
  local m = mode == nil and "r" or mode
  if type(m) ~= "string" then return nil end
  m = str_sub(m, 1, (str_find(m, "\0", 1, true) or #m + 1) - 1)
  if not setfenv and not str_find(m, "^[rwa]%+?b*$") then return nil end
  local c = str_sub(m, 1, 1)
  if c ~= "r" and c ~= "w" and c ~= "a" then return nil end
  local rest = str_sub(m, 2, 7)
  return c, str_find(rest, "+", 1, true) ~= nil, c ~= "r" and str_find(rest, "x", 1, true) ~= nil
end

-- sb.openr opens r, a checked path, without following symbolic links
-- where it can (sb.nofollow on LuaJIT, the host's K frames elsewhere),
-- else by name (see docs/sandbox.md, "Not covered"). A mode that opens
-- nothing goes to io.open, to fail as the interpreter fails.
function sb.openr(r, mode)
  local f, err, code
  if sb.nofollow then
    f, err, code = sb.nofollow(r, mode)
  elseif host.holds and sb.open_mode(mode) and host.usable() then
    f, err, code = host.open(r, sb.open_mode(mode))
  elseif mode == nil then
    f, err, code = io_open(r)
  else
    f, err, code = io_open(r, mode)
  end
  -- (a file alone, as io.open returns it)
  if f then return f end
  return nil, err, code
end

local function sb_open(p, mode)
  p = path_arg(p, "open")
  if mode ~= nil then
    -- The mode's type is checked (Lua 5.2+: the mode itself too) before
    -- anything is opened; raised here, it names the chunk's line, not the
    -- driver's.
    local tm = type(mode)
    if tm == "number" then mode = tostring(mode)
    elseif tm ~= "string" then error("bad argument #2 to 'open' (string expected, got " .. tm .. ")", 2) end
    if not setfenv and not sb.open_mode(mode) then error("bad argument #2 to 'open' (invalid mode)", 2) end
  end
  local r, err = resolve(p, mode ~= nil and (str_find(tostring(mode), "^[wa]") or str_find(tostring(mode), "+", 1, true)) and true)
  if not r then return nil, err, 13 end
  heap.files = heap.files + 1
  return sb.openr(r, mode)
end

-- strip_shebang drops a first line starting with "#", as loadfile does.
local function strip_shebang(s)
  if str_byte(s, 1) == 35 then
    local nl = str_find(s, "\n", 1, true)
    if not nl then return "" end
    return "--" .. str_sub(s, nl)
  end
  return s
end

-- load_text compiles the file at the resolved path r as a text chunk,
-- opened by sb.openr (Lua 5.2+ without K frames: by loadfile itself).
local function load_text(r, env)
  if not setfenv and not host.holds and not sb.nofollow then return real_loadfile(r, "t", env) end
  local f, err = sb.openr(r, "rb")
  if not f then return nil, "cannot open " .. err end
  local s, rerr = f_read(f, "*a")
  f_close(f)
  if type(s) ~= "string" then return nil, "cannot read " .. r .. (rerr and ": " .. tostring(rerr) or "") end
  if not setfenv then
    -- as loadfile: a UTF-8 byte order mark, then a first line that
    -- starts with "#", are skipped
    if str_sub(s, 1, 3) == "\239\187\191" then s = str_sub(s, 4) end
    s = strip_shebang(s)
    return load(s, "@" .. r, "t", env)
  end
  s = strip_shebang(s)
  if str_byte(s, 1) == 27 then return nil, BINARY end
  local fn, lerr = loadstring(s, "@" .. r)
  if fn then setfenv(fn, env) end
  return fn, lerr
end

local function sb_loadfile(file, mode, ...)
  local env = cur_env
  if select("#", ...) > 0 then env = ... end
  if file == nil then
    -- Standard input: /dev/null in the process engine.
    if setfenv then return lloadfile(nil) end
    return real_loadfile(nil, "t", env)
  end
  file = path_arg(file, "loadfile")
  local r, err = resolve(file)
  if not r then return nil, err end
  return load_text(r, env)
end

local function sb_dofile(file)
  -- (checked here: from sb_loadfile, the error named loadfile, at its line)
  if file ~= nil then file = path_arg(file, "dofile") end
  local f, err = sb_loadfile(file)
  if not f then error(err, 0) end -- as the interpreter's: no position
  return f()
end

local function sb_load_any(chunk, name, mode, ...)
  if setfenv then
    if type(chunk) == "function" then
      local parts, n = {}, 0
      while true do
        local piece = chunk()
        if piece == nil or piece == "" then break end
        if type(piece) ~= "string" then return nil, "reader function must return a string" end
        -- A binary chunk is refused at its first piece, as Lua 5.4 does
        -- (a reader that never ends would run out of memory first).
        if n == 0 and str_byte(piece, 1) == 27 then return nil, BINARY end
        n = n + 1; parts[n] = piece
      end
      chunk = tconcat(parts, "", 1, n)
      if name == nil then name = "=(load)" end
    end
    if type(chunk) == "string" and str_byte(chunk, 1) == 27 then return nil, BINARY end
    local f, err
    if type(chunk) == "string" then f, err = loadstring(chunk, name)
    else f, err = load(chunk, name) end
    if f then
      local env = cur_env
      if select("#", ...) > 0 then env = ... end
      setfenv(f, env)
    end
    return f, err
  end
  if select("#", ...) > 0 then return load(chunk, name, "t", ...) end
  return load(chunk, name, "t", cur_env)
end

local function sb_load(...)
  return reraise(sb_load_any(...))
end

local function sb_loadstring(s, name)
  return sb_load(s, name)
end

-- module(name, ...) of Lua 5.1, on the environment's own package.loaded
-- and globals. The real one works on the registry's package.loaded, which
-- holds the real _G: module("_G") gave the chunk every global the sandbox
-- removes (os.execute, io.popen, debug, ffi).
local function sb_module(name, ...)
  if type(name) ~= "string" then
    error("bad argument #1 to 'module' (string expected, got " .. (name == nil and "no value" or type(name)) .. ")", 2)
  end
  -- setfenv(2, t) below sets the caller's environment: called by the
  -- driver's own code (require calling it as a loader, a function module
  -- calls tail-calling it on LuaJIT), it changed that of a driver closure
  -- every later call shares. Refused as the interpreter refuses a C caller.
  local caller = sb.getinfo(2, "S")
  if caller and (caller.what == "C" or caller.source == "=[bioxen driver]") then
    error("'module' not called from a Lua function", 0)
  end
  local loaded = type(cur_pkg) == "table" and rawget(cur_pkg, "loaded")
  if type(loaded) ~= "table" then error("'package.loaded' must be a table", 2) end
  local t = rawget(loaded, name)
  if type(t) ~= "table" then
    t = cur_env
    for part in str_gmatch(name, "[^%.]+") do
      local v = rawget(t, part)
      if v == nil then
        v = {}
        rawset(t, part, v)
      elseif type(v) ~= "table" then
        error("name conflict for module '" .. name .. "'", 2)
      end
      t = v
    end
    rawset(loaded, name, t)
  end
  if rawget(t, "_NAME") == nil then
    rawset(t, "_M", t)
    rawset(t, "_NAME", name)
    rawset(t, "_PACKAGE", str_match(name, "^(.*%.)[^%.]*$") or "")
  end
  setfenv(2, t)
  for i = 1, select("#", ...) do (select(i, ...))(t) end
end

-- package.seeall(m): m sees the environment's globals (the real one gives
-- it the real _G). A protected metatable is refused: io.stdout, io.stderr
-- and io.stdin are the driver's tables, shared by every call, and their
-- metatable's __index set to one call's environment looked their methods
-- up there in every later call.
local function sb_seeall(m)
  if type(m) ~= "table" then
    error("bad argument #1 to 'seeall' (table expected, got " .. (m == nil and "no value" or type(m)) .. ")", 2)
  end
  local mt = getmt(m)
  if mt ~= nil and rawget(mt, "__metatable") ~= nil then
    -- Level 0: called by module, level 2 would be the driver's line.
    error("cannot change a protected metatable", 0)
  end
  if mt == nil then
    mt = {}
    setmetatable(m, mt)
  end
  rawset(mt, "__index", cur_env)
  return m
end

-- setmetatable of Lua 5.2+, without finalizers: Lua marks a table for
-- finalization only when its new metatable has a __gc field, so the field
-- is taken out of the metatable for the real setmetatable and put back.
-- A finalizer runs where the collector calls it: in a later call (whose
-- io.stdout it could change through the shared standard files) or in the
-- driver's own code. Lua 5.1 and LuaJIT have no finalizers for tables.
-- Bad arguments are reported as the real one does, at the caller's level.
local function sb_typename(v, none)
  if none then return "no value" end
  local m = getmt(v)
  local name = m and rawget(m, "__name")
  if type(name) == "string" and _VERSION ~= "Lua 5.2" then return name end
  return type(v)
end

local function sb_setmetatable(...)
  local t, mt = ...
  local n = select("#", ...)
  if type(t) ~= "table" then
    error("bad argument #1 to 'setmetatable' (table expected, got " .. sb_typename(t, n < 1) .. ")", 2)
  end
  local tm = type(mt)
  if tm ~= "table" and (tm ~= "nil" or n < 2) then
    error("bad argument #2 to 'setmetatable' (nil or table expected" ..
      (LUA54 and ", got " .. sb_typename(mt, n < 2) or "") .. ")", 2)
  end
  local cur = getmt(t)
  if cur ~= nil and rawget(cur, "__metatable") ~= nil then
    error("cannot change a protected metatable", 2)
  end
  if tm == "nil" or rawget(mt, "__gc") == nil then return setmetatable(t, mt) end
  local gc = rawget(mt, "__gc")
  rawset(mt, "__gc", nil)
  setmetatable(t, mt)
  rawset(mt, "__gc", gc)
  return t
end

local function sb_collectgarbage(opt, ...)
  if opt == "step" and select("#", ...) > 0 then
    -- (the real one's error would name this function's local and line)
    local n = ...
    if n ~= nil and tonumber(n) == nil then
      error("bad argument #2 to 'collectgarbage' (number expected, got " .. type(n) .. ")", 2)
    end
  end
  if opt == nil or opt == "collect" or opt == "count" or opt == "step" then
    return real_collectgarbage(opt, ...)
  end
  if type(opt) ~= "string" and type(opt) ~= "number" then
    error("bad argument #1 to 'collectgarbage' (string expected, got " .. type(opt) .. ")", 2)
  end
  error("bad argument #1 to 'collectgarbage' (option '" .. tostring(opt) ..
    "' is not allowed in the sandbox: only count, collect, step)", 2)
end

local function readable_module(file)
  local r = normalize(file)
  if r and realpath then r = realpath(r) elseif r then r = host_realpath(r) end
  if not r then return nil end
  if under(r, sb_allowed, nallowed) or under(r, sb.ro, sb.nro) or under(r, sb_modules, nmodules) then return r end
  return nil
end

function sb.lua(name)
  local path = pkg_string("path")
  local fname = str_gsub(name, "%.", "/")
  local msg, n = {}, 0
  for template in str_gmatch(path, "[^;]+") do
    local file = str_gsub(template, "%?", function() return fname end)
    local r = readable_module(file)
    if r then
      local fh = sb.openr(r, "r")
      if fh then
        f_close(fh)
        local f, lerr = load_text(r, cur_env)
        if not f then
          error(str_format("error loading module '%s' from file '%s':\n\t%s", name, file, tostring(lerr)), 2)
        end
        return f, file
      end
      n = n + 1; msg[n] = "\n\tno file '" .. file .. "'"
    end
  end
  n = n + 1; msg[n] = "\n\t(the sandbox loads modules only from the VM's package environments and allowed directories)"
  return tconcat(msg, "", 1, n)
end

function sb.c(name)
  local cpath = pkg_string("cpath")
  local fname = str_gsub(name, "%.", "/")
  for template in str_gmatch(cpath, "[^;]+") do
    local file = str_gsub(template, "%?", function() return fname end)
    local r = readable_module(file)
    if r then
      local fh = sb.openr(r, "r")
      if fh then
        f_close(fh)
        return "\n\tmodule '" .. name .. "' is a C module (" .. file .. "): C modules are not loaded in the sandbox"
      end
    end
  end
  return "\n\tno C module '" .. name .. "' either (C modules are not loaded in the sandbox)"
end

local function set_plain(key, value)
  for i = 1, nplain do
    if plain_k[i] == key then plain_v[i] = value; return end
  end
end

-- apply_sandbox filters the snapshot down to the allow-list and puts the
-- sandbox's functions in place.
local function apply_sandbox()
  sb.on = true
  local k2, v2, n2 = {}, {}, 0
  for i = 1, nplain do
    if SB_GLOBALS[plain_k[i]] then n2 = n2 + 1; k2[n2] = plain_k[i]; v2[n2] = plain_v[i] end
  end
  plain_k, plain_v, nplain = k2, v2, n2
  local keep, nkeep = {}, 0
  for i = 1, nlibs do
    local lib = libs[i]
    local allow = SB_LIBS[lib.name]
    if allow == true then
      nkeep = nkeep + 1; keep[nkeep] = lib
    elseif allow then
      local ks, vs, n = {}, {}, 0
      for j = 1, lib.n do
        if allow[lib.keys[j]] then n = n + 1; ks[n] = lib.keys[j]; vs[n] = lib.vals[j] end
      end
      lib.keys, lib.vals, lib.n = ks, vs, n
      nkeep = nkeep + 1; keep[nkeep] = lib
    end
  end
  libs, nlibs = keep, nkeep
  set_plain("load", sb_load); set_plain("loadstring", sb_loadstring)
  set_plain("loadfile", sb_loadfile); set_plain("dofile", sb_dofile)
  set_plain("collectgarbage", sb_collectgarbage)
  if setfenv then -- Lua 5.1 and LuaJIT have module and package.seeall
    set_plain("module", sb_module)
    override("package", "seeall", sb_seeall)
  end
  override("io", "open", sb_open)
  sb.open, sb.check = sb_open, resolve
  if not setfenv then set_plain("setmetatable", sb_setmetatable) end
  -- getmetatable("") and getmetatable(f) of a file from io.open are
  -- false, so neither the string metatable nor the FILE* one can be
  -- reached; the driver itself uses debug.getmetatable, which ignores the
  -- field. Between calls the string metatable's __index is the sandbox's
  -- string table (no dump), not the real one.
  local sb_string
  for i = 1, nlibs do
    local lib = libs[i]
    if lib.name == "string" then
      sb_string = {}
      for j = 1, lib.n do sb_string[lib.keys[j]] = lib.vals[j] end
    end
  end
  for i = 1, nshared do
    local t, saved = shared[i][1], shared[i][2]
    if t == strmt or t == filemt then
      t.__metatable = false
      saved.__metatable = false
      if t == strmt and sb_string then t.__index = sb_string; saved.__index = sb_string end
    end
  end
  -- Lua 5.1 and LuaJIT make the FILE* metatable its own __index: f.__index
  -- of a file from io.open was the metatable getmetatable(f) hides, to
  -- read and change (its __gc ran on the driver's stack). Files get a
  -- method table of their own, restored after each call like the rest.
  if filemt and rawget(filemt, "__index") == filemt then
    local methods = {}
    for k, v in next, filemt do
      if type(k) ~= "string" or str_sub(k, 1, 2) ~= "__" then methods[k] = v end
    end
    filemt.__index = methods
    for i = 1, nshared do
      if shared[i][1] == filemt then shared[i][2].__index = methods end
    end
    snapshot(methods)
  end
end

-- configure applies the host's policy (or none: an older host) once,
-- before the first chunk.
function sb.configure(sandbox, payload)
  sb.configured = true
  if sandbox then
    for kind, p in str_gmatch(payload or "", "(%a)([^%z]*)%z") do
      if kind == "c" then sb_cwd = p
      elseif kind == "a" then nallowed = nallowed + 1; sb_allowed[nallowed] = p
      elseif kind == "r" then sb.nro = sb.nro + 1; sb.ro[sb.nro] = p
      elseif kind == "m" then nmodules = nmodules + 1; sb_modules[nmodules] = p end
    end
    apply_sandbox()
  end
  sb.generate()
end
end -- Sandbox

-- make_env builds a new environment from the snapshot. It is generated
-- as one Lua function made of table constructors, which size each table
-- once: several times faster than filling tables field by field, and a
-- fresh environment is built for every call. Keys that are not plain
-- strings are set after construction.
local make_env
local function generate_make_env()
  local src, ns = { "local P, L, fix = ...\n" }, 1
  local function add(s) ns = ns + 1; src[ns] = s end
  local fixups, nfix = {}, 0
  for i = 1, nlibs do add(str_format("local L%d = L[%d]\n", i, i)) end
  add("return function()\nlocal env = {")
  for i = 1, nplain do
    local k = plain_k[i]
    if type(k) == "string" then add(str_format("[%q]=P[%d],", k, i))
    else nfix = nfix + 1; fixups[nfix] = { nil, k, plain_v[i] } end
  end
  for i = 1, nlibs do
    local lib = libs[i]
    if type(lib.name) == "string" then
      add(str_format("[%q]={", lib.name))
      for j = 1, lib.n do
        local k = lib.keys[j]
        if type(k) == "string" then add(str_format("[%q]=L%d[%d],", k, i, j))
        else nfix = nfix + 1; fixups[nfix] = { lib.name, k, lib.vals[j] } end
      end
      add("},")
    end
  end
  add("}\nenv._G = env\n")
  if nfix > 0 then
    add("for i = 1, #fix do local f = fix[i] if f[1] == nil then env[f[2]] = f[3] else env[f[1]][f[2]] = f[3] end end\n")
  end
  add("return env\nend\n")
  local lvals = {}
  for i = 1, nlibs do lvals[i] = libs[i].vals end
  local code = tconcat(src, "", 1, ns)
  local gen = setfenv and loadstring(code, "=[bioxen env]") or load(code, "=[bioxen env]", "t")
  make_env = gen(plain_v, lvals, fixups)
end
sb.generate = generate_make_env

local persistent_env, persistent_string, persistent_pkg

-- Values ------------------------------------------------------------------------------

local sbuf, sn, ssize, sbudget, smaxdepth, scut
local onpath = {}

local function put(s)
  sn = sn + 1; sbuf[sn] = s; ssize = ssize + #s
end

local function put_opaque(t, text)
  if #text > 1024 then text = str_sub(text, 1, 1024) end
  local s = t .. " " .. text
  put("o" .. #s .. ":"); put(s)
end

local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return type(v)
end

local function ser(v, depth)
  if scut then return end
  if ssize >= sbudget then put("z"); scut = true; return end
  local tv = type(v)
  if tv == "nil" then
    put("n")
  elseif tv == "boolean" then
    put(v and "t" or "f")
  elseif tv == "number" then
    if math_type and math_type(v) == "integer" then
      put("i" .. str_format("%d", v) .. ";")
    elseif v ~= v then put("dnan;")
    elseif v == huge then put("dinf;")
    elseif v == -huge then put("d-inf;")
    else put("d" .. str_format("%.17g", v) .. ";") end
  elseif tv == "string" then
    if ssize + #v > sbudget then put("z"); scut = true; return end
    put("s" .. #v .. ":"); put(v)
  elseif tv == "table" then
    if onpath[v] then put_opaque("table", "<cycle>"); return end
    if depth > smaxdepth then put_opaque("table", "<depth limit>"); return end
    onpath[v] = true
    local n, maxk, seq = 0, 0, true
    for k in next, v do
      n = n + 1
      if seq then
        if type(k) == "number" and k >= 1 and k == floor(k) then
          if k > maxk then maxk = k end
        else
          seq = false
        end
      end
    end
    if seq and n > 0 and maxk == n then
      put("L" .. n .. ";")
      for i = 1, n do ser(rawget(v, i), depth + 1) end
    else
      put("M" .. n .. ";")
      for k, x in next, v do ser(k, depth + 1); ser(x, depth + 1) end
    end
    onpath[v] = nil
  else
    put_opaque(tv, safe_tostring(v))
  end
end

local function serialize(res, maxdepth, budget)
  sbuf, sn, ssize, sbudget, smaxdepth, scut = {}, 0, 0, budget, maxdepth, false
  put(res.n - 1 .. ";")
  for i = 2, res.n do ser(res[i], 1) end
  onpath = {}
  local s = tconcat(sbuf, "", 1, sn)
  sbuf = nil
  return s
end

-- Errors --------------------------------------------------------------------------------


-- clip keeps the head of a huge message, as the host's
-- core.MaxErrorMessageBytes does.
local function clip(msg)
  if #msg > 65536 then
    msg = str_sub(msg, 1, 65472) .. "... [" .. (#msg - 65472) .. " more bytes]"
  end
  return msg
end

-- The handler's record of an error is kept here, keyed by an empty token
-- table that travels as the error object: in Lua 5.4 it passes through the
-- chunk's __close handlers, which could otherwise change the record or
-- give it metamethods that would run user code in the driver's teardown.
local records = setmetatable({}, { __mode = "k" })
local function err_record(msg, tb, raw)
  local token = {}
  records[token] = { msg = msg, tb = tb, raw = raw }
  return token
end

local function handler(e)
  if exit_code ~= nil then return EXIT end
  local msg
  local te = type(e)
  if te == "string" then msg = e
  elseif te == "number" then msg = tostring(e)
  else msg = "(error object is a " .. te .. " value)" end
  return err_record(clip(msg), traceback("", 2))
end

-- The traceback without the driver's frames at its bottom, ending like the
-- standalone interpreter's. Its lines are cut at TB_LINE bytes: a line
-- names a function, whose name can be megabytes long, and a traceback of
-- such lines went over the host's frame size limit (a protocol error that
-- killed the interpreter).
local TB_LINE = 1024
local function trim_traceback(tb)
  if type(tb) ~= "string" then tb = "" end
  if str_byte(tb, 1) == 10 then tb = str_sub(tb, 2) end
  local lines, n = {}, 0
  local pos = 1
  while true do
    local s, e = str_find(tb, "\n", pos, true)
    local last = s and s - 1 or #tb
    local line
    if last - pos >= TB_LINE then
      line = str_sub(tb, pos, pos + TB_LINE - 1) .. "..."
    else
      line = str_sub(tb, pos, last)
    end
    n = n + 1; lines[n] = line
    if s == nil then break end
    pos = e + 1
  end
  if n == 0 or lines[1] ~= "stack traceback:" then
    return "stack traceback:\n\t[C]: in ?"
  end
  -- The chunk runs under the driver's xpcall, the outermost xpcall on the
  -- stack: drop it and the driver's frames below it.
  local last = n
  for i = n, 2, -1 do
    if str_find(lines[i], "^%s*%[C%]: in function 'xpcall'") then last = i - 1; break end
  end
  -- At the top, the frames of a driver function the chunk called (print,
  -- io.write ...) read like the interpreter's C function.
  local first, name = 2, nil
  while first < last do
    local l = lines[first]
    if str_find(l, "^%s*%[bioxen driver%]:") then
      name = str_match(l, "in %a+ '([^']+)'")
    elseif not (str_find(l, "^%s*%[C%]:") and str_find(lines[first + 1], "^%s*%[bioxen driver%]:")) then
      break
    end
    first = first + 1
  end
  if first > 2 then
    first = first - 1
    lines[first] = name and "\t[C]: in function '" .. name .. "'" or "\t[C]: in ?"
  end
  if first > last then return "stack traceback:\n\t[C]: in ?" end
  return "stack traceback:\n" .. tconcat(lines, "\n", first, last) .. "\n\t[C]: in ?"
end

-- Interrupts ------------------------------------------------------------------------------
--
-- The host interrupts a chunk with SIGINT, as a terminal's ^C would. The
-- standalone interpreter (lua.c, luajit.c) catches SIGINT while it runs a
-- -e chunk, and the driver runs inside the bootstrap's -e: the handler
-- sets a debug hook on the main thread that raises "interrupted!" at the
-- next instruction, call or return, and puts SIGINT back to its default
-- action (a second ^C kills the process). The interpreter installs its
-- handler again only when it starts its next -e chunk.
--
-- So user code runs on the main thread and everything else the driver does
-- (reading requests, preparing and finishing calls) runs in the coroutine
-- `worker`. On Lua 5.1-5.4 hooks are per thread: the interrupt hook never
-- fires in the worker, so no read or write of the protocol can be cut in
-- two. The small trampoline on the main thread that hands work between
-- them is written so that an error raised at any of its instructions loses
-- nothing. LuaJIT's hooks are global: there the driver blocks SIGINT
-- (through the FFI) except while user code runs.
--
-- Re-arming: on LuaJIT the driver reinstalls the interpreter's handler
-- through the FFI. On Lua 5.x the host starts the interpreter with nstubs
-- arguments "-e bioxen_resume()" after the bootstrap: to re-arm, the
-- driver returns to the interpreter, which starts the next -e chunk (and
-- installs its handler again), and that chunk calls back into the driver.
-- The host sends at most one SIGINT until the driver says that it is armed
-- again (A frame); the driver tells the host when an interrupt it did not
-- expect spent the handler (I frame).

local intr_mode = "stubs" -- "stubs" (Lua 5.x), "mask" (LuaJIT with the FFI) or "none"
local nrearm = tonumber(nstubs) or 0
local block, unblock, arm, absorb -- LuaJIT only
if jit_off then
  intr_mode = "none"
  if ffi then
    local ok = pcall(function()
      ffi.cdef [[
        typedef struct { unsigned long val[16]; } bx_sigset_t;
        typedef void (*bx_sighandler_t)(int);
        struct bx_timespec { long tv_sec; long tv_nsec; };
        int bx_sigemptyset(bx_sigset_t *) __asm__("sigemptyset");
        int bx_sigaddset(bx_sigset_t *, int) __asm__("sigaddset");
        int bx_sigprocmask(int, const bx_sigset_t *, bx_sigset_t *) __asm__("sigprocmask");
        int bx_sigtimedwait(const bx_sigset_t *, void *, const struct bx_timespec *) __asm__("sigtimedwait");
        bx_sighandler_t bx_signal(int, bx_sighandler_t) __asm__("signal");
      ]]
      local C = ffi.C
      local SIGINT, SIG_BLOCK, SIG_UNBLOCK = 2, 0, 1 -- Linux
      local set = ffi.new("bx_sigset_t")
      C.bx_sigemptyset(set)
      C.bx_sigaddset(set, SIGINT)
      local zero = ffi.new("struct bx_timespec")
      -- We run inside the interpreter's -e chunk: its handler is installed.
      local h = C.bx_signal(SIGINT, ffi.cast("bx_sighandler_t", 1))
      C.bx_signal(SIGINT, h)
      if tonumber(ffi.cast("intptr_t", h)) <= 1 then error("no SIGINT handler") end
      local sigprocmask, signal, sigtimedwait = C.bx_sigprocmask, C.bx_signal, C.bx_sigtimedwait
      block = function() sigprocmask(SIG_BLOCK, set, nil) end
      unblock = function() sigprocmask(SIG_UNBLOCK, set, nil) end
      arm = function() signal(SIGINT, h) end
      absorb = function() while sigtimedwait(set, nil, zero) == SIGINT do end end
    end)
    if ok then
      intr_mode = "mask"
      block()
    else
      block, unblock, arm, absorb = nil, nil, nil, nil
    end
  end
end

local spent, reported = false, false -- the handler is spent / the host was told

-- The call handed from the worker to the main thread and back.
local job_state = "idle" -- idle, run, running, ran, rearm, sync, rearmed, quit
local job_fn, job_print, job_res, job_err
local progress = 0 -- counts the trampoline's completed steps

-- Running a chunk -------------------------------------------------------------------------

local NO_TB = "stack traceback:\n\t[C]: in ?"

local function report_spent()
  if spent and not reported and intr_mode == "stubs" then
    send("I", "")
    reported = true
  end
end

-- msg is clipped here too: a syntax error quotes the token it met, which
-- can be as long as the source.
local function finish_error(msg, tb)
  sync_out()
  send("F", clip(msg))
  send("T", tb)
  report_spent()
  out_write("D 1 0\n")
  out_flush()
end

local function finish_exit()
  sync_out()
  report_spent()
  out_write("D ", exit_code, " 0\n")
  out_flush()
end

local function finish_incomplete()
  sync_out()
  send("N", "")
  report_spent()
  out_write("D 0 0\n")
  out_flush()
end

local function compile(code, name, env)
  if setfenv then
    if str_byte(code, 1) == 27 then
      return nil, "attempt to load a binary chunk (mode is 't')"
    end
    local fn, err = loadstring(code, name)
    if fn then setfenv(fn, env) end
    return fn, err
  end
  return load(code, name, "t", env)
end

-- setup prepares a call in the worker: it returns true when the chunk is to
-- run, false when the call is already finished (syntax error, incomplete
-- REPL input).
local function setup(flags, name, code)
  exit_code = nil
  heap.start, heap.files, heap.fresh = heap.gc("count"), 0, flags % 2 == 1
  cur_out, cur_in = fake_stdout, fake_stdin
  stream = floor(flags / 4) % 2 == 1
  host.answers = floor(flags / 16) % 2 == 1
  host.holds = floor(flags / 32) % 2 == 1 and host.proc_ok ~= false
  local repl = floor(flags / 8) % 2 == 1
  local env, es, pkg
  if flags % 2 == 1 then
    env = make_env()
    es, pkg = env.string, install_package(env)
  else
    if not persistent_env then
      local penv = make_env()
      persistent_string, persistent_pkg = penv.string, install_package(penv)
      persistent_env = penv
    end
    env, es, pkg = persistent_env, persistent_string, persistent_pkg
  end
  cur_env, cur_pkg = env, pkg
  local print_results = floor(flags / 2) % 2 == 1

  local fn, err
  if repl then
    -- One input of lua -i: "=expr" is "return expr"; an expression is
    -- printed; a chunk whose syntax error is at its end waits for more.
    local c = code
    local eq = str_byte(c, 1) == 61
    if eq then c = str_sub(c, 2) end
    local rerr
    fn, rerr = compile("return " .. c, name, env)
    if fn and jit_off then
      -- LuaJIT keeps no frame for a tail call, so error("x") typed in
      -- would lose its position: evaluate the values in the chunk's frame.
      fn = compile("return (function(...) return ... end)(" .. c .. "\n)", name, env) or fn
    end
    if fn then
      print_results = true
    else
      -- "=expr" is only ever "return expr": its error is that one's (an
      -- "=1," continued on the next line waits for it, as in lua -i).
      if eq then err = rerr else fn, err = compile(code, name, env) end
      if not fn and type(err) == "string" and str_find(err, "<eof>'?$") then
        finish_incomplete()
        return false
      end
    end
    -- JIT-compiled loops never see the interrupt hook: typed-in code runs
    -- interpreted (functions it defines are still compiled).
    if fn and jit_off then jit_off(fn) end
  else
    fn, err = compile(code, name, env)
  end
  if not fn then
    if type(err) ~= "string" then err = "(error object is a " .. type(err) .. " value)" end
    finish_error(err, NO_TB)
    return false
  end
  if strmt and type(es) == "table" then strmt.__index = es end
  job_fn, job_print = fn, print_results
  return true
end

-- teardown finishes a call in the worker with the result the main thread
-- left in job_res.
local function teardown(maxdepth, budget)
  local res = job_res
  job_res, job_fn, job_err = nil, nil, nil
  restore_shared()
  -- What the chunk left, its values too once sent, is garbage to the next
  -- call, but the collector may not have run: the buffers of string.rep,
  -- table.concat ... (and every allocation on 5.1 and LuaJIT) fail without
  -- collecting first, and the next call's big string ran out of memory
  -- with the limit nearly free; files left open weigh too little to make
  -- it run, and a call that opened them up to the process's limit left
  -- later calls unable to open one. A call that grew the heap by 16 MiB
  -- and by more than the heap it started with (so that a collection costs
  -- in proportion to what the call did: a persistent environment can hold
  -- much), or a fresh call that opened more than 64 files, collects before
  -- it ends.
  local grew = heap.gc("count") - heap.start
  local collect = (grew > heap.growth and grew > heap.start) or (heap.fresh and heap.files > heap.maxfiles)

  local payload, msg, tb
  if exit_code ~= nil then
    -- finish_exit below
  elseif not res[1] then
    local e = res[2]
    local rec = type(e) == "table" and records[e]
    if rec then
      msg, tb = rec.msg, rec.raw and rec.tb or trim_traceback(rec.tb)
    else
      -- The handler itself failed (stack overflow in the handler,
      -- out of memory): e is Lua's message.
      msg = type(e) == "string" and clip(e) or "(error object is a " .. type(e) .. " value)"
      tb = NO_TB
    end
    if type(msg) == "string" and str_find(msg, "interrupted!$") then
      if intr_mode == "stubs" then spent = true end
      -- The hook fired in a driver function the chunk called (print ...):
      -- say it like the interpreter does for a C function.
      if str_find(msg, "^%[bioxen driver%]:%d+: interrupted!$") then msg = "interrupted!" end
    end
  elseif res.perr ~= nil then
    local perr = res.perr
    if perr == OOM then
      -- Out of memory while printing the values (a __tostring): as any
      -- memory error, the host reports it and replaces the interpreter.
      msg, tb = OOM, NO_TB
    else
      if type(perr) == "string" and str_find(perr, "^%[bioxen driver%]:%d+: interrupted!$") then perr = "interrupted!" end
      msg = clip("error calling 'print' (" .. (type(perr) == "string" and perr or "(error object is a " .. type(perr) .. " value)") .. ")")
      tb = NO_TB
    end
  else
    payload = serialize(res, maxdepth, budget)
  end
  res = nil
  if collect then heap.gc("collect") end

  if exit_code ~= nil then finish_exit()
  elseif msg ~= nil then finish_error(msg, tb)
  else
    sync_out()
    send("R", payload)
    report_spent()
    out_write("D 0 0\n")
    out_flush()
  end
end

local function internal_error(err)
  restore_shared()
  clear_buffers()
  -- Out of memory: Lua's own message, which the host reports as ErrNoMem.
  local msg = err == OOM and OOM or "bioxen driver internal error: " .. (type(err) == "string" and err or type(err))
  finish_error(msg, NO_TB)
end

-- do_rearm answers the host's A frame.
local function do_rearm()
  if intr_mode == "mask" then
    absorb() -- a SIGINT sent just as the last call ended
    arm()
    spent, reported = false, false
    out_write("A 1 0\n")
  elseif intr_mode == "stubs" and nrearm > 0 then
    nrearm = nrearm - 1
    job_state = "rearm"
    co_yield() -- back here from the next -e stub
    spent, reported = false, false
    out_write("A 1 0\n")
  else
    -- Pass through the main thread all the same, so that an interrupt
    -- hook still pending from the last call fires there and not in the
    -- next chunk.
    job_state = "sync"
    co_yield()
    out_write("A 0 0\n")
  end
  out_flush()
end

local function read_line()
  while true do
    local line, _, code = f_read(inp, "*l")
    if line ~= nil or code ~= EINTR then return line end
  end
end

local version = _VERSION
if type(rawget(_G, "jit")) == "table" and type(jit.version) == "string" then
  version = version .. " " .. jit.version
end

-- The worker: reads requests and runs them through the main thread.
local function worker_loop()
  -- The hello goes from here, under main_protected: the host may send
  -- SIGINT as soon as it has it, and an interrupt the main chunk took
  -- (sent from there, the hello came before the driver's protection) ended
  -- the interpreter.
  out_write("H ", intr_mode == "none" and 0 or 1, " ", #version, "\n", version)
  out_flush()
  while true do
    local line = read_line()
    if line == nil then break end
    local tag = str_sub(line, 1, 1)
    if tag == "P" and not sb.configured then
      local on, len = str_match(line, "^P (%d+) (%d+)$")
      if not on then
        f_write(real_stderr, "bioxen driver: bad frame header: ", line, "\n")
        break
      end
      len = tonumber(len)
      local payload = ""
      if len > 0 then payload = f_read(inp, len) end
      if payload == nil or #payload ~= len then break end
      local ok, err = pcall(sb.configure, on == "1", payload)
      if not ok then
        f_write(real_stderr, "bioxen driver: bad policy: ", tostring(err), "\n")
        break
      end
    elseif tag == "X" then
      if not sb.configured then sb.configure(false) end
      local flags, maxdepth, budget, namelen, len = str_match(line, "^X (%d+) (%d+) (%d+) (%d+) (%d+)$")
      if not flags then
        f_write(real_stderr, "bioxen driver: bad frame header: ", line, "\n")
        break
      end
      flags, maxdepth, budget, namelen, len = tonumber(flags), tonumber(maxdepth), tonumber(budget), tonumber(namelen), tonumber(len)
      local payload = ""
      if len > 0 then
        local _, code
        payload, _, code = f_read(inp, len)
        if payload == nil and code == EINTR then
          -- Part of the request may be lost: the stream cannot be trusted.
          f_write(real_stderr, "bioxen driver: a signal interrupted the reading of a request\n")
          break
        end
      end
      if payload == nil or #payload ~= len then break end
      local name, code = str_sub(payload, 1, namelen), str_sub(payload, namelen + 1)
      payload = nil
      local ok, ready = pcall(setup, flags, name, code)
      if not ok then
        internal_error(ready)
      elseif ready then
        job_state = "run"
        co_yield() -- the main thread runs the chunk
        local ok2, err = pcall(teardown, maxdepth, budget)
        if not ok2 then internal_error(err) end
      end
    elseif tag == "W" or tag == "L" or tag == "K" then
      -- The answer to a W, L or K frame whose wait an interrupt cut short.
    elseif tag == "A" then
      do_rearm()
    elseif tag == "Q" then
      break
    else
      f_write(real_stderr, "bioxen driver: unknown frame: ", line, "\n")
      break
    end
  end
  job_state = "quit"
end

local worker = co_create(worker_loop)
driver_co = worker

-- The main thread ---------------------------------------------------------------------------
--
-- An interrupt can raise "interrupted!" at any instruction of the
-- trampoline; main_protected catches it and calls the trampoline again,
-- which carries on from job_state. Every state change is one assignment.

local function abort_job()
  if block then block() end
  sethook()
  local msg = job_err
  if type(msg) ~= "string" or str_find(msg, "^%[bioxen driver%]:%d+: interrupted!$") then msg = "interrupted!" end
  job_res = { n = 2, false, err_record(msg, NO_TB, true) }
  job_state = "ran"
end

local function trampoline()
  while true do
    local st = job_state
    if st == "run" then
      job_state = "running"
      if arm then arm(); unblock() end
      local res = pack(xpcall(job_fn, handler))
      if job_print and res[1] and res.n > 1 and exit_code == nil then
        local ok, perr = pcall(lprint, unpack(res, 2, res.n))
        if not ok then res.perr = perr end
      end
      if block then block() end
      sethook() -- a hook left by the chunk would run in the driver
      job_res = res
      job_state = "ran"
      progress = progress + 1
    elseif st == "running" then
      -- The interrupt came after the chunk returned, or before it started.
      abort_job()
    elseif st == "rearm" or st == "quit" then
      return st
    else -- idle, ran, sync, rearmed: the worker's turn
      if st == "sync" then job_state = "idle" end
      local ok, err = co_resume(worker)
      if not ok then
        f_write(real_stderr, "bioxen driver internal error: ", type(err) == "string" and err or type(err), "\n")
        return "quit"
      end
      progress = progress + 1
    end
  end
end

local function main_protected()
  local fails, seen = 0, progress
  while true do
    local ok, r = pcall(trampoline)
    if ok then return r end
    -- An error outside user code: an interrupt that missed the chunk (or
    -- an error from a debug hook the chunk left on the main thread).
    if r == OOM then
      -- The driver itself ran out of memory (the chunk's data fills the
      -- interpreter's RLIMIT_AS): it cannot go on; the host reports the
      -- call as out of memory and starts a new interpreter.
      f_write(real_stderr, "bioxen driver: not enough memory\n")
      return "quit"
    end
    if type(r) == "string" and str_find(r, "interrupted!$") then spent = true end
    if job_state == "run" then
      -- A SIGINT that came while the call was being prepared, or between
      -- calls: it interrupts this call.
      job_err = r
      job_state = "running"
    elseif job_state == "running" then
      job_err = r
    end
    if progress ~= seen then fails, seen = 0, progress end
    fails = fails + 1
    if fails > 1000 then
      f_write(real_stderr, "bioxen driver: cannot take control back from the chunk's debug hook\n")
      return "quit"
    end
  end
end

local function enter()
  if main_protected() == "quit" then
    out_flush()
    os_exit(0)
  end
  -- "rearm": back to the interpreter, whose next -e stub calls bioxen_resume.
end

rawset(_G, "bioxen_resume", function()
  job_state = "rearmed"
  return enter()
end)

-- Start: the worker sends the hello ------------------------------------------------------------

return enter()
