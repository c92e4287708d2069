/*
** bioxen.h — the C interface of libbioxen, the engine of pylua_bioxen_vm_lib.
**
** libbioxen runs Lua code in virtual machines: an embedded Lua 5.1
** interpreter (gopher-lua) inside the host process, or a real Lua interpreter
** (lua5.4, luajit, ...) in a child process driven over pipes. Everything in
** this file is the public API; anything else the shared object exports is
** internal and may change.
**
** Conventions, for every function below:
**
**   - Objects are opaque 64-bit handles. 0 is never a valid handle. A handle
**     is never reused after it is closed, so using a closed handle is
**     reported as BIOXEN_E_BADHANDLE, never undefined behaviour.
**   - Every function that can fail returns an int status: BIOXEN_OK (0) or
**     one of the BIOXEN_E_* codes. After a failure, bioxen_errmsg() gives a
**     message for people, kept per thread (like errno): it stays valid
**     until the next libbioxen call that fails on the same thread.
**   - Ownership is stated on each function. Memory the library hands out is
**     freed with the library's own function for it (bioxen_result_free);
**     memory the caller passes in stays the caller's and is not kept after
**     the call returns.
**   - All functions are safe to call from any number of threads at once.
**     Calls on one VM run one at a time (a second caller waits).
**   - No Go panic ever crosses this boundary: an internal fault is reported
**     as BIOXEN_ERROR with a message.
*/
#ifndef BIOXEN_H
#define BIOXEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
** CAPI: Version
**
** BIOXEN_VERSION_NUMBER is major*1000000 + minor*1000 + patch. A program can
** check that the header it was compiled with matches the library it runs
** with: assert(bioxen_version_number() == BIOXEN_VERSION_NUMBER).
*/
#define BIOXEN_VERSION        "0.2.0"
#define BIOXEN_VERSION_NUMBER 2000

/* bioxen_version returns BIOXEN_VERSION of the library (static string). */
const char *bioxen_version(void);
/* bioxen_version_number returns BIOXEN_VERSION_NUMBER of the library. */
int bioxen_version_number(void);

/*
** CAPI: Result codes
**
** New codes may be added; treat unknown non-zero codes as BIOXEN_ERROR.
*/
#define BIOXEN_OK               0  /* success */
#define BIOXEN_ERROR            1  /* an error that fits no other code */
#define BIOXEN_E_INVALID        2  /* bad argument: NULL, empty code, NUL byte, bad option */
#define BIOXEN_E_BADHANDLE      3  /* unknown or closed handle */
#define BIOXEN_E_TIMEOUT        4  /* the call ran past its timeout; the VM is usable */
#define BIOXEN_E_LUA_NOT_FOUND  5  /* the Lua interpreter asked for is not installed */
#define BIOXEN_E_FILE_NOT_FOUND 6  /* a script file is missing or unreadable */
#define BIOXEN_E_ENGINE         7  /* the engine failed (interpreter crashed); the VM restarts on next use */
#define BIOXEN_E_TOOLARGE       8  /* source code over the VM's size limit */
#define BIOXEN_E_UNSUPPORTED    9  /* feature not available for this VM */
#define BIOXEN_E_NOMEM          10 /* a memory limit was hit */
#define BIOXEN_E_RANGE          11 /* a buffer is too small */
#define BIOXEN_E_CLOSED         12 /* the VM is closed */
#define BIOXEN_E_AUTH           13 /* authentication refused (XAPI login, SSH) */
#define BIOXEN_E_CONNECTION     14 /* a remote host is unreachable or the connection broke */
#define BIOXEN_E_HOSTKEY        15 /* SSH host key unknown or changed, or TLS certificate not trusted */
#define BIOXEN_E_CPU            16 /* the call used up its CPU-time budget (cpu_limit_ms); the VM is usable */

/*
** CAPI: Error messages
**
** bioxen_errmsg returns the message of the last failed libbioxen call on the
** calling thread, or "" when none failed yet. The string is owned by the
** library (thread-local storage, at most 4095 bytes; longer messages are cut
** and end in "..."); do not free it; it stays valid until the next failing
** call on the same thread.
**
** bioxen_errstr returns a static description of a status code; never NULL.
*/
const char *bioxen_errmsg(void);
const char *bioxen_errstr(int code);

/*
** CAPI: VM handles and options
*/
typedef uint64_t bioxen_vm;

/*
** bioxen_vm_options configures bioxen_vm_open. Zero-initialise it, set size
** to sizeof(bioxen_vm_options), then set what you need; zero/NULL fields
** take the defaults. New fields are only ever added at the end: a program
** compiled against an older header passes its smaller size and the library
** reads only the fields it has. The strings are read during the call only.
*/
typedef struct bioxen_vm_options {
  size_t size;                /* sizeof(bioxen_vm_options) */
  const char *engine;         /* "embedded" (default), "process" or "xcpng" (docs/xcpng.md) */
  const char *interpreter;    /* process engine: executable name or path; default "lua" */
  const char *name;           /* label for log lines; may be NULL */
  int persistent;             /* non-zero: globals survive across calls */
  int64_t max_source_bytes;   /* refuse larger code; default 16 MiB */
  int64_t max_output_bytes;   /* keep at most this much stdout and stderr per call; default 8 MiB */
  const char *package_path;   /* put in front of package.path (";"-separated templates); may be NULL */
  const char *package_cpath;  /* put in front of package.cpath; may be NULL */
  int trusted;                /* non-zero: no sandbox (docs/sandbox.md); for trusted code only */
  const char *allowed_paths;  /* ':'-separated directories sandboxed code may open files in; may be NULL */
  const char *config_json;    /* engine-specific configuration, a JSON object (engine "xcpng": docs/xcpng.md), else BIOXEN_E_INVALID; may be NULL */
  const char *module_roots;   /* ':'-separated directories sandboxed require may load Lua modules from; may be NULL */
  int64_t max_memory_bytes;   /* memory limit of the VM (docs/sandbox.md); 0: default 1 GiB; negative: none */
  int64_t cpu_limit_ms;       /* CPU time one call may use (not wall-clock time); 0: no limit */
} bioxen_vm_options;

/*
** bioxen_vm_open opens a VM.
**
** CONSTRUCTOR: bioxen_vm
** opts may be NULL for all defaults. On success *vm_out holds a new handle
** that the caller closes with bioxen_vm_close. On failure *vm_out is 0.
** The process engine starts its interpreter at once, so a missing
** interpreter is reported here.
**
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (NULL vm_out, unknown engine, bad
** size: 0 (not set) or under the oldest layout, over 4096 bytes, not the size of a
** released layout (one that ends inside a field would drop settings), or a
** newer layout that sets fields this library does not know, negative
** cpu_limit_ms, config_json that is not a JSON object or, for engine
** "xcpng", a missing, mistyped or unknown key); BIOXEN_E_LUA_NOT_FOUND;
** BIOXEN_E_ENGINE (the interpreter started but did not speak the
** protocol). Engine "xcpng" logs in to XAPI, provisions and boots a VM and
** connects to it over SSH here, so it also returns BIOXEN_E_AUTH,
** BIOXEN_E_HOSTKEY, BIOXEN_E_CONNECTION, BIOXEN_E_TIMEOUT (a step ran past
** its time) and BIOXEN_ERROR (XAPI refused a step: its message says which).
*/
int bioxen_vm_open(const bioxen_vm_options *opts, bioxen_vm *vm_out);

/*
** bioxen_vm_close closes a VM and frees everything it holds (for the process
** engine: stops the interpreter's whole process group).
**
** DESTRUCTOR: bioxen_vm
** bioxen_vm_close(0) is a harmless no-op that returns BIOXEN_OK; closing a
** handle twice returns BIOXEN_E_BADHANDLE the second time.
**
** A call running on the VM in another thread (bioxen_vm_exec without a
** timeout too) is interrupted, as a timeout would stop it, and fails with
** BIOXEN_E_CLOSED; calls waiting for their turn fail with BIOXEN_E_CLOSED;
** the VM's sessions are closed first. bioxen_vm_close waits up to 2 seconds
** for the running call to stop: a chunk stuck inside one long builtin that
** cannot be interrupted ends later, and the VM's resources are released
** when it does (bioxen_vm_close has returned BIOXEN_OK by then).
**
** Returns: BIOXEN_OK (also for 0); BIOXEN_E_BADHANDLE (closed already, or
** never opened). The handle is closed whatever it returns.
*/
int bioxen_vm_close(bioxen_vm vm);

/*
** CAPI: Results
**
** A bioxen_result is allocated by the library and owned by the caller, who
** frees it (and every buffer in it) with bioxen_result_free. Every data
** pointer is non-NULL and points to len bytes followed by a NUL byte (the
** data itself may hold NUL bytes; use the length).
*/
typedef struct bioxen_result {
  char *stdout_data;      /* what the chunk wrote to stdout */
  size_t stdout_len;
  char *stderr_data;      /* what it wrote to stderr; on a Lua error, "message\nstack traceback:..." */
  size_t stderr_len;
  char *values_json;      /* returned values, JSON array in the encoding of docs/values.md */
  size_t values_len;
  char *error_message;    /* the Lua error message without traceback; "" on success */
  size_t error_len;
  int return_code;        /* 0 success, 1 Lua error, n after os.exit(n): saturated to
                             [INT_MIN, INT_MAX] (os.exit(2^32) gives INT_MAX; no process
                             exits, so this is not the 8-bit status n & 0xff) */
  int success;            /* return_code == 0 */
  int truncated;          /* stdout or stderr hit max_output_bytes */
} bioxen_result;

/* bioxen_exec flags */
#define BIOXEN_EXEC_PRINT_RESULTS 1 /* print returned values to stdout like the Lua REPL */

/*
** bioxen_vm_exec runs code_len bytes of Lua source at code.
**
** METHOD: bioxen_vm
** timeout_ms > 0 bounds the call's wall-clock time; 0 or negative means no
** limit, and so does a value of 9223372036854 or more (the largest number of
** milliseconds the library's clock holds, about 292 years). flags is 0 or
** BIOXEN_EXEC_PRINT_RESULTS (any other bit is BIOXEN_E_INVALID, also for the
** session and async calls, so that a flag of a later library is not ignored
** silently). code_len may be any size_t value: one over the
** VM's max_source_bytes is BIOXEN_E_TOOLARGE (nothing is read past it). A Lua syntax or runtime error is not a
** failure of this function: it returns BIOXEN_OK with a result whose success
** is 0. On BIOXEN_OK *result_out holds a new result for the caller to free
** with bioxen_result_free; on any other status *result_out is NULL.
**
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (NULL pointers, empty code, a NUL
** byte); BIOXEN_E_TOOLARGE; BIOXEN_E_BADHANDLE; BIOXEN_E_CLOSED (the VM was
** closed by another thread meanwhile); BIOXEN_E_TIMEOUT (the VM is
** still usable; on the process engine the interpreter was restarted and a
** persistent VM lost its globals); BIOXEN_E_CPU (the call used up
** cpu_limit_ms of CPU time; usable as after a timeout); BIOXEN_E_NOMEM (the
** VM went over max_memory_bytes; its Lua state was reset); BIOXEN_E_ENGINE
** (the interpreter crashed; it restarts on the next call); engine "xcpng":
** BIOXEN_E_CONNECTION (the connection to its VM broke; the next call
** reconnects), and BIOXEN_E_AUTH or BIOXEN_E_HOSTKEY when that reconnection
** is refused.
*/
int bioxen_vm_exec(bioxen_vm vm, const char *code, size_t code_len,
                   int64_t timeout_ms, int flags, bioxen_result **result_out);

/*
** bioxen_vm_exec_file runs the script at path (a NUL-terminated string),
** like `lua path`: a leading #! line is skipped and returned values are not
** printed. Ownership and statuses as bioxen_vm_exec, plus
** BIOXEN_E_FILE_NOT_FOUND (missing, unreadable, a directory) and
** BIOXEN_E_INVALID for a path that is not a regular file (a device such as
** /dev/zero, a FIFO, a socket: they are refused before anything is read).
** At most max_source_bytes are read: a larger file, or one that grows past
** it while being read, is BIOXEN_E_TOOLARGE.
**
** METHOD: bioxen_vm
*/
int bioxen_vm_exec_file(bioxen_vm vm, const char *path, int64_t timeout_ms,
                        bioxen_result **result_out);

/*
** bioxen_result_free frees a result and all its buffers.
**
** DESTRUCTOR: bioxen_result
** bioxen_result_free(NULL) is a harmless no-op.
*/
void bioxen_result_free(bioxen_result *result);

/*
** bioxen_vm_exec_async runs code like bioxen_vm_exec without blocking the
** caller: the code is copied, the call is queued on the VM (calls on one VM
** still run one at a time; its async calls run in the order they were
** made, and so do the async calls on one session, with the input sent
** around them), and done(userdata, status, result, message) is called exactly
** once from a library thread when it finishes.
**
** METHOD: bioxen_vm
** In done: status is as bioxen_vm_exec would return; on BIOXEN_OK result is
** a new result that the callback (or whoever it hands it to) frees with
** bioxen_result_free, otherwise result is NULL and message (valid during the
** callback only; never NULL) says why. done must not block for long.
** timeout_ms bounds the whole call, the wait for the VM's earlier async
** calls included (as bioxen_vm_exec's covers its wait for the VM): a call
** still waiting when it passes does not run (BIOXEN_E_TIMEOUT).
** Closing the VM (or the session) does not wait for done: a call it ends
** reports BIOXEN_E_CLOSED through done, usually after bioxen_vm_close has
** returned, so keep userdata until done has been called.
**
** Returns: BIOXEN_OK when the call was queued (done will be called);
** otherwise a status as bioxen_vm_exec, and done is not called.
*/
typedef void (*bioxen_exec_done_fn)(void *userdata, int status, bioxen_result *result,
                                    const char *message);
int bioxen_vm_exec_async(bioxen_vm vm, const char *code, size_t code_len, int64_t timeout_ms,
                         int flags, bioxen_exec_done_fn done, void *userdata);

/*
** bioxen_vm_exec_async_v2 is bioxen_vm_exec_async that also hands out, in
** *call_out (call_out may be NULL), a handle with which the call can be
** stopped: bioxen_call_interrupt. The handle needs no freeing: it is valid
** from the return of this function until done is called, and stale after
** (handles are never reused). *call_out is 0 when the call was not queued.
**
** METHOD: bioxen_vm
*/
typedef uint64_t bioxen_call;
int bioxen_vm_exec_async_v2(bioxen_vm vm, const char *code, size_t code_len, int64_t timeout_ms,
                            int flags, bioxen_exec_done_fn done, void *userdata,
                            bioxen_call *call_out);

/*
** bioxen_call_interrupt stops an async call (what an asyncio task's
** cancellation asks for) and returns at once. A call of
** bioxen_vm_exec_async_v2 still waiting behind the VM's earlier async
** calls leaves the line without running; one that runs is stopped like a
** blocking call at Ctrl-C
** (bioxen_set_interrupt_fd): the engine's own interrupt keeps the VM's
** state, cancellation follows after 500 ms or at a second
** bioxen_call_interrupt. A call of bioxen_session_execute_async_v2 that is
** still queued leaves the queue; one that runs is interrupted (state kept),
** and the session's other input is left alone. done is then called with
** BIOXEN_E_TIMEOUT, unless the call had finished anyway.
**
** Returns: BIOXEN_OK; BIOXEN_E_BADHANDLE (the call has finished: done was
** called or is being called; harmless).
*/
int bioxen_call_interrupt(bioxen_call call);

/*
** bioxen_free frees memory the library handed out with a "free with
** bioxen_free" note (session output). bioxen_free(NULL) is a no-op.
*/
void bioxen_free(void *p);

/*
** CAPI: Interactive sessions
**
** A session drives a persistent VM like the standalone interpreter's
** interactive mode (`lua -i`), without a terminal: input is text sent in
** pieces; every complete line is added to the chunk being typed; a complete
** chunk runs (a line that is an expression, or "=expr", prints its values);
** an incomplete one waits for more lines; an error goes to the session's
** stderr and the session carries on with its state. Output holds only what
** the Lua code wrote - no banner, prompt or echo. Chunks run on a library
** thread, one at a time; bioxen_vm_exec on the same VM sees the same state.
**
** Output not taken by a reader is kept up to 4 MiB per session; past that
** the oldest is dropped (in whole UTF-8 characters) and the next read
** starts with "[bioxen: N bytes of older output dropped]\n". Each switch between stdout
** and stderr (past the first 64 kept) counts 32 bytes against the 4 MiB, so
** output alternating between the streams a byte at a time keeps less text
** but no more memory. The Lua code never blocks on a slow reader.
**
** timeout_ms of bioxen_session_read and bioxen_session_wait: 0 or negative
** does not wait; 9223372036854 or more (about 292 years) waits without end.
*/
typedef uint64_t bioxen_session;

#define BIOXEN_STDOUT 1 /* a stream bit: standard output */
#define BIOXEN_STDERR 2 /* a stream bit: standard error */

/*
** bioxen_session_open starts a session on vm, which must have been opened
** with persistent set (BIOXEN_E_INVALID otherwise).
**
** CONSTRUCTOR: bioxen_session
** On success *session_out holds a handle that the caller closes with
** bioxen_session_close; closing the VM also closes its sessions.
** Returns: BIOXEN_OK; BIOXEN_E_INVALID; BIOXEN_E_BADHANDLE (vm is closed);
** BIOXEN_E_CLOSED (another thread closed vm while the session was being
** opened: no session was made).
*/
int bioxen_session_open(bioxen_vm vm, bioxen_session *session_out);

/*
** bioxen_session_close interrupts a running chunk and ends the session (the
** VM stays open). bioxen_session_close(0) is a no-op. Its listener, if any,
** is removed as by bioxen_session_set_listener(session, NULL, NULL).
**
** DESTRUCTOR: bioxen_session
** Returns: BIOXEN_OK; BIOXEN_E_BADHANDLE (closed already, also by closing
** its VM, or never opened).
*/
int bioxen_session_close(bioxen_session session);

/*
** bioxen_session_send queues len bytes of input and returns at once. Input
** that does not end in a newline is completed with one, like pressing Enter.
** The bytes are copied. input may be NULL when len is 0 (an empty line).
**
** METHOD: bioxen_session
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (a NUL byte, NULL input with len > 0); BIOXEN_E_TOOLARGE (len,
** any size_t value, or the chunk being typed with this input and the input
** sent before it that has not run yet, over the VM's max_source_bytes);
** BIOXEN_E_BADHANDLE; BIOXEN_E_CLOSED (another thread was closing the
** session or its VM).
*/
int bioxen_session_send(bioxen_session session, const char *input, size_t len);

/*
** bioxen_session_read takes the output produced so far on streams
** (BIOXEN_STDOUT, BIOXEN_STDERR or both, interleaved in the order written).
** When there is none it waits up to timeout_ms for the first output, and
** returns early, with nothing, when the session is idle (no queued input, no
** running chunk). A UTF-8 character is never split between two reads (nor
** between two listener calls): a write that ends inside one is held back
** until the write that completes it, or until its chunk ends.
**
** METHOD: bioxen_session
** On BIOXEN_OK *data_out points to *len_out bytes plus a NUL, owned by the
** caller, freed with bioxen_free (also when *len_out is 0); on any other
** status *data_out is NULL and *len_out 0 (those of them that are not NULL).
** A session closed meanwhile (or whose VM was) gives what was left, then "".
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (data_out or len_out NULL, streams
** not BIOXEN_STDOUT, BIOXEN_STDERR or both); BIOXEN_E_BADHANDLE.
*/
int bioxen_session_read(bioxen_session session, int streams, int64_t timeout_ms,
                        char **data_out, size_t *len_out);

/*
** bioxen_session_execute runs code as one chunk, after the input queued
** before it, and blocks until it finishes: its complete output and status
** come back in a result (free it with bioxen_result_free), not through
** bioxen_session_read. timeout_ms, flags and code_len (BIOXEN_E_TOOLARGE)
** as bioxen_vm_exec; timeout_ms bounds the whole call, the wait for the
** input queued before it included: a chunk still waiting when it passes
** does not run (BIOXEN_E_TIMEOUT). Ownership of the result and statuses as
** bioxen_vm_exec; BIOXEN_E_CLOSED also when the session is closed before
** or while the chunk runs, and BIOXEN_E_TIMEOUT when
** bioxen_session_interrupt drops it.
**
** METHOD: bioxen_session
*/
int bioxen_session_execute(bioxen_session session, const char *code, size_t code_len,
                           int64_t timeout_ms, int flags, bioxen_result **result_out);

/*
** bioxen_session_execute_async is bioxen_session_execute without blocking:
** the code is copied and done is called exactly once from a library thread,
** with the rules of bioxen_vm_exec_async.
**
** METHOD: bioxen_session
*/
int bioxen_session_execute_async(bioxen_session session, const char *code, size_t code_len,
                                 int64_t timeout_ms, int flags, bioxen_exec_done_fn done,
                                 void *userdata);

/*
** bioxen_session_execute_async_v2 is bioxen_session_execute_async with a
** call handle for bioxen_call_interrupt, as bioxen_vm_exec_async_v2.
**
** METHOD: bioxen_session
*/
int bioxen_session_execute_async_v2(bioxen_session session, const char *code, size_t code_len,
                                    int64_t timeout_ms, int flags, bioxen_exec_done_fn done,
                                    void *userdata, bioxen_call *call_out);

/*
** bioxen_session_wait blocks until the session is idle or timeout_ms passes
** (0 or negative: do not wait; 9223372036854 or more: no end); *idle_out
** (may be NULL) is 1 when idle, else 0 (also on every failure). A session
** closed during the wait (bioxen_session_close from another thread), or
** whose VM was closed, gives BIOXEN_E_CLOSED: the input it dropped will not
** run; a handle already closed is BIOXEN_E_BADHANDLE.
**
** METHOD: bioxen_session
*/
int bioxen_session_wait(bioxen_session session, int64_t timeout_ms, int *idle_out);

/*
** bioxen_session_status reports whether the session is busy (input queued
** or a chunk running) and whether an incomplete chunk waits for more lines.
** Either pointer may be NULL; both are 0 on failure.
**
** METHOD: bioxen_session
** Returns: BIOXEN_OK; BIOXEN_E_BADHANDLE.
*/
int bioxen_session_status(bioxen_session session, int *busy_out, int *pending_out);

/*
** bioxen_session_interrupt stops the running chunk, keeping the session's
** Lua state (the chunk ends with an "interrupted" error on stderr), and drops
** queued input and the rest of the running input's lines; a queued
** bioxen_session_execute returns BIOXEN_E_TIMEOUT. It returns at once. If
** the chunk does not stop within 500 ms (a process engine busy inside one C
** function) the interpreter is restarted and the state is lost. Only the
** session's own chunk is stopped: input still waiting for another caller's
** call on the VM is cancelled, and that call runs on.
**
** METHOD: bioxen_session
** Returns: BIOXEN_OK (also when nothing runs); BIOXEN_E_BADHANDLE.
*/
int bioxen_session_interrupt(bioxen_session session);

/*
** bioxen_session_set_listener streams output to fn(userdata, stream, data,
** len) as it is produced (data valid during the call only), from a library
** thread, in order. While a listener is set, output goes to it instead of
** the buffer that bioxen_session_read takes from. fn NULL removes it.
** Output comes in pieces of at most 64 KiB (plus up to 3 bytes completing
** a character the piece before ended inside): a longer line or write comes
** in several calls, and the chunk's timeout or an interrupt stops it
** between two of them.
** When a call that removes or replaces a listener returns (this one,
** bioxen_session_close, bioxen_vm_close), the old fn is no longer running
** and is not called again, so its userdata may be freed: the call waits for
** a running fn to return (so do not hold a lock fn waits for), except when
** made from inside fn itself.
**
** fn may call libbioxen, even to close its own session or VM (the close
** returns at once and completes when fn has returned); but a call that
** waits for the session - bioxen_vm_exec on its VM, bioxen_session_execute
** or bioxen_session_wait on it - waits for the chunk that is calling fn:
** give it a timeout. A call from fn that removes, replaces or closes
** another session's listener (bioxen_session_set_listener,
** bioxen_session_close, bioxen_vm_close on another session or VM) waits for
** that listener's running call: two listeners doing so to each other wait
** for each other forever. Hand such work to another thread.
**
** METHOD: bioxen_session
** Returns: BIOXEN_OK; BIOXEN_E_BADHANDLE (also for a session being closed).
*/
typedef void (*bioxen_output_fn)(void *userdata, int stream, const char *data, size_t len);
int bioxen_session_set_listener(bioxen_session session, bioxen_output_fn fn, void *userdata);

/*
** CAPI: Interrupting blocking calls (Ctrl-C)
**
** bioxen_set_interrupt_fd lets a signal stop the blocking calls of the
** calling thread - bioxen_vm_exec, bioxen_vm_exec_file and
** bioxen_session_execute - while they run: fd is the read end of a
** self-pipe (or socket) that a signal handler writes signal numbers to, one
** byte each, such as Python's signal.set_wakeup_fd (a C handler must be
** installed with SA_ONSTACK, as every handler in a process that runs Go
** code must: the signal may arrive on a thread running Go). When the byte
** SIGINT arrives, the call running on this thread is stopped as ^C stops a chunk
** in `lua -i`: the engine's own interrupt keeps the Lua state; if the chunk
** has not stopped after 500 ms, or on a second SIGINT, it is cancelled
** outright (the process engine kills its interpreter, and a persistent VM
** loses its globals). The call then returns BIOXEN_E_TIMEOUT with a message
** saying "interrupted" and whether the state was kept, unless it had
** finished anyway. A session's call interrupts the session while the call
** waits in its queue or runs, as bioxen_session_interrupt does (queued
** input is dropped too), and nothing after it has ended. Bytes that
** arrive while no call runs, and other signal numbers, are read and ignored.
** The chunk still runs on the calling thread: this costs a call nothing.
**
** The library reads a close-on-exec duplicate of fd and sets O_NONBLOCK on
** it (a flag the two share), so fd may be closed afterwards. Nothing else
** should read the pipe. fd must be a pipe or socket open for reading (the
** read end: BIOXEN_E_INVALID otherwise). The setting is per thread; a new
** call replaces it and -1 removes it (any other negative fd is
** BIOXEN_E_INVALID). Remove it before the thread exits: otherwise the duplicate
** stays open (and watched) until every writer has closed the pipe.
**
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (fd not open, not a pipe or socket,
** open for writing only).
*/
int bioxen_set_interrupt_fd(int fd);

/*
** CAPI: Package management
**
** bioxen_packages runs one package-management operation described by a
** JSON request (len bytes at request_json) and returns a JSON response
** {"result": ...}. The request names the home directory of environments and
** the operation:
**
**   {"op": "...", "home": "/path", "catalogs": ["packages.json", ...],
**    "default_repos": [{"name": "local", "url": "file:///dir"}], ...}
**
** with op one of catalog, search (query), repos, add_repo (name, url,
** index), move_repo (name, index), remove_repo (name; for both, the
** name or the URL as listed), envs, create_env
** (env), remove_env (env), paths (env, lua_version, create), install /
** update (env, package, version), remove (env, package), list (env), lock
** (env, path), install_lock (env, path or lock), health (env, create).
** docs/packages.md describes each. Repository listings show URLs without
** their credentials.
** "allow_build_commands": true lets the rockspecs of an install, update or
** install_lock run their own build steps and hooks (the "command", "make"
** and "cmake" build types) as the calling user; without it they are
** refused. Only set it for repositories you trust.
**
** On BIOXEN_OK *response_out points to *response_len bytes plus a NUL,
** owned by the caller, freed with bioxen_free; on any other status
** *response_out is NULL and *response_len 0 (those of the two pointers
** that are not NULL; either NULL is BIOXEN_E_INVALID). Installs run the real
** luarocks and may take seconds. A request over 16 MiB (len may be any
** size_t value) is BIOXEN_E_TOOLARGE.
*/
int bioxen_packages(const char *request_json, size_t len, char **response_out, size_t *response_len);

/*
** CAPI: XAPI and SSH operations
**
** bioxen_remote runs one stateless XAPI or SSH operation described by a JSON
** request and returns {"result": ...} (ownership as bioxen_packages). XAPI
** ops (url, username, password, ca_file | fingerprint | insecure,
** allow_loopback_ip, ssh_port_key, timeout): xapi_login, xapi_vms,
** xapi_find_template (template), xapi_launch (template, name: provision,
** start, wait for the address), xapi_start (ref: boot a halted VM, wait
** for the address), xapi_power_state (ref), xapi_shutdown (ref),
** xapi_destroy (ref). SSH op ssh_run (host, port, user, password |
** key_files, known_hosts, trust_on_first_use, command, stdin, timeout): the
** command runs under a remote `timeout -s KILL`; the result holds
** exit_status, signal, stdout, stderr. timeout is in seconds: 0, negative
** or absent is 300; one too large for the library's clock (about 292
** years or more) is none. Op xcpng_check_config (config: a JSON object)
** checks the keys of an "xcpng" engine's config_json without connecting
** anywhere: BIOXEN_E_INVALID naming every missing required, mistyped or
** unknown key (the VM's login and host-key policy are checked when the VM
** opens). Passwords never appear in messages.
*/
int bioxen_remote(const char *request_json, size_t len, char **response_out, size_t *response_len);

/*
** bioxen_vm_install_package installs a Lua package into an "xcpng" VM with
** luarocks over SSH, from the library's repositories: the request JSON is
** {"package": name, "home": ..., "catalogs": [...], "default_repos": [...]}
** and the response {"result": {"installed": [...]}} (ownership as
** bioxen_packages). BIOXEN_E_UNSUPPORTED for other engines (their packages
** live in package environments: bioxen_packages).
**
** METHOD: bioxen_vm
*/
int bioxen_vm_install_package(bioxen_vm vm, const char *request_json, size_t len, char **response_out,
                              size_t *response_len);

/*
** CAPI: Processes
**
** The library runs a Go runtime with threads of its own, which fork() does
** not copy: a child of fork() made after the library was loaded (Python's
** multiprocessing with the "fork" start method, a pre-forking server)
** cannot use it. There every function of this file that needs the runtime
** fails at once with BIOXEN_ERROR and a message saying so
** (bioxen_live_handles returns 0); bioxen_errmsg, bioxen_errstr,
** bioxen_version, bioxen_version_number, bioxen_result_free and bioxen_free
** work. Load and use the library in the process that uses it, or exec in
** the child; posix_spawn and vfork+exec are fine.
*/

/*
** CAPI: Logging
**
** The library never writes to the host's stdout or stderr. Its log lines go
** to a callback, if one is set: fn(userdata, level, message) with level
** 10 debug, 20 info, 30 warning, 40 error (the numbers of Python's logging),
** and message a NUL-terminated string valid during the callback only. Lines
** below min_level are not produced. fn is called from one thread of the
** library's own, never from the thread whose call logged (which waits until
** fn returns, so lines keep their order and come before that call returns):
** the host's code never runs in the middle of its own call (a Python
** signal handler raising there was swallowed). fn must not call back into
** libbioxen: such a call (other than bioxen_errmsg, bioxen_errstr,
** bioxen_version*, bioxen_result_free, bioxen_free and
** bioxen_live_handles) fails with BIOXEN_E_INVALID, as it would wait for
** a log line that waits for fn. Pass fn NULL to remove the callback. When
** bioxen_set_log_callback returns, the previous fn is no longer running on
** any thread and is not called again (its userdata may be freed).
** Returns: BIOXEN_OK (BIOXEN_E_INVALID only from inside the log callback).
*/
typedef void (*bioxen_log_fn)(void *userdata, int level, const char *message);
int bioxen_set_log_callback(bioxen_log_fn fn, void *userdata, int min_level);

/*
** bioxen_live_handles returns how many handles (VMs, sessions and running
** async calls) are open, for leak checks.
*/
int bioxen_live_handles(void);

#ifdef __cplusplus
}
#endif

#endif /* BIOXEN_H */
