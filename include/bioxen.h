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
** to sizeof(bioxen_vm_options) (so later versions can add fields), then set
** what you need; zero/NULL fields take the defaults. The strings are read
** during the call only.
*/
typedef struct bioxen_vm_options {
  size_t size;                /* sizeof(bioxen_vm_options) */
  const char *engine;         /* "embedded" (default) or "process" */
  const char *interpreter;    /* process engine: executable name or path; default "lua" */
  const char *name;           /* label for log lines; may be NULL */
  int persistent;             /* non-zero: globals survive across calls */
  int64_t max_source_bytes;   /* refuse larger code; default 16 MiB */
  int64_t max_output_bytes;   /* keep at most this much stdout and stderr per call; default 8 MiB */
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
** size); BIOXEN_E_LUA_NOT_FOUND; BIOXEN_E_ENGINE (the interpreter started
** but did not speak the protocol).
*/
int bioxen_vm_open(const bioxen_vm_options *opts, bioxen_vm *vm_out);

/*
** bioxen_vm_close closes a VM and frees everything it holds (for the process
** engine: stops the interpreter's whole process group).
**
** DESTRUCTOR: bioxen_vm
** bioxen_vm_close(0) is a harmless no-op that returns BIOXEN_OK; closing a
** handle twice returns BIOXEN_E_BADHANDLE the second time.
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
  int return_code;        /* 0 success, 1 Lua error, n after os.exit(n) */
  int success;            /* return_code == 0 */
  int truncated;          /* stdout or stderr hit max_output_bytes */
} bioxen_result;

/* bioxen_exec flags */
#define BIOXEN_EXEC_PRINT_RESULTS 1 /* print returned values to stdout like the Lua REPL */

/*
** bioxen_vm_exec runs code_len bytes of Lua source at code.
**
** METHOD: bioxen_vm
** timeout_ms > 0 bounds the call's wall-clock time; 0 means no limit. flags
** is 0 or BIOXEN_EXEC_PRINT_RESULTS. A Lua syntax or runtime error is not a
** failure of this function: it returns BIOXEN_OK with a result whose success
** is 0. On BIOXEN_OK *result_out holds a new result for the caller to free
** with bioxen_result_free; on any other status *result_out is NULL.
**
** Returns: BIOXEN_OK; BIOXEN_E_INVALID (NULL pointers, empty code, a NUL
** byte); BIOXEN_E_TOOLARGE; BIOXEN_E_BADHANDLE; BIOXEN_E_TIMEOUT (the VM is
** still usable; on the process engine the interpreter was restarted and a
** persistent VM lost its globals); BIOXEN_E_ENGINE.
*/
int bioxen_vm_exec(bioxen_vm vm, const char *code, size_t code_len,
                   int64_t timeout_ms, int flags, bioxen_result **result_out);

/*
** bioxen_vm_exec_file runs the script at path (a NUL-terminated string),
** like `lua path`: a leading #! line is skipped and returned values are not
** printed. Ownership and statuses as bioxen_vm_exec, plus
** BIOXEN_E_FILE_NOT_FOUND.
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
** CAPI: Logging
**
** The library never writes to the host's stdout or stderr. Its log lines go
** to a callback, if one is set: fn(userdata, level, message) with level
** 10 debug, 20 info, 30 warning, 40 error (the numbers of Python's logging),
** and message a NUL-terminated string valid during the callback only. Lines
** below min_level are not produced. fn may be called from any thread, also
** threads the library created; it must not call back into libbioxen. Pass
** fn NULL to remove the callback.
*/
typedef void (*bioxen_log_fn)(void *userdata, int level, const char *message);
int bioxen_set_log_callback(bioxen_log_fn fn, void *userdata, int min_level);

/*
** bioxen_live_handles returns how many handles are open (for leak checks).
*/
int bioxen_live_handles(void);

#ifdef __cplusplus
}
#endif

#endif /* BIOXEN_H */
