/* The public C symbols of libbioxen. Each forwards to a Go export in
 * capi.go (whose cgo-generated prototypes cannot carry const), or is plain C
 * where no Go is needed: versions, error strings, thread-local messages and
 * freeing results. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bioxen.h"
#include "shim.h"
#include "_cgo_export.h"

const char *bioxen_version(void) { return BIOXEN_VERSION; }
int bioxen_version_number(void) { return BIOXEN_VERSION_NUMBER; }

/* The last error message of each thread, like errno. A pthread key rather
 * than __thread: a dlopen()ed library has almost no static TLS to spare, and
 * the key's destructor frees the buffer when the thread exits. */
#define ERRBUF_SIZE 4096
static pthread_key_t errkey;
static pthread_once_t errkey_once = PTHREAD_ONCE_INIT;

static void errkey_init(void) { pthread_key_create(&errkey, free); }

static char *errbuf(int create) {
  pthread_once(&errkey_once, errkey_init);
  char *buf = pthread_getspecific(errkey);
  if (!buf && create) {
    buf = calloc(1, ERRBUF_SIZE);
    if (buf && pthread_setspecific(errkey, buf) != 0) {
      free(buf);
      buf = NULL;
    }
  }
  return buf;
}

const char *bioxen_errmsg(void) {
  const char *buf = errbuf(0);
  return buf ? buf : "";
}

void bioxen__set_err(const char *msg, size_t n) {
  char *buf = errbuf(1);
  if (!buf) return;
  if (n >= ERRBUF_SIZE) {
    memcpy(buf, msg, ERRBUF_SIZE - 4);
    memcpy(buf + ERRBUF_SIZE - 4, "...", 4);
    return;
  }
  memcpy(buf, msg, n);
  buf[n] = 0;
}

const char *bioxen_errstr(int code) {
  switch (code) {
  case BIOXEN_OK: return "ok";
  case BIOXEN_ERROR: return "error";
  case BIOXEN_E_INVALID: return "invalid argument";
  case BIOXEN_E_BADHANDLE: return "unknown or closed handle";
  case BIOXEN_E_TIMEOUT: return "timeout";
  case BIOXEN_E_LUA_NOT_FOUND: return "Lua interpreter not found";
  case BIOXEN_E_FILE_NOT_FOUND: return "file not found";
  case BIOXEN_E_ENGINE: return "engine failure";
  case BIOXEN_E_TOOLARGE: return "too large";
  case BIOXEN_E_UNSUPPORTED: return "unsupported";
  case BIOXEN_E_NOMEM: return "out of memory";
  case BIOXEN_E_RANGE: return "buffer too small";
  case BIOXEN_E_CLOSED: return "closed";
  case BIOXEN_E_AUTH: return "authentication failed";
  case BIOXEN_E_CONNECTION: return "connection failed";
  case BIOXEN_E_HOSTKEY: return "host key or certificate not trusted";
  case BIOXEN_E_CPU: return "cpu limit";
  default: return "unknown status code";
  }
}

/* fork(): the Go runtime inside the library does not survive it - a child
 * of fork() has only the forking thread, and its first call into Go waited
 * forever. A child is told so instead (bioxen.h: "Processes"). The Go
 * runtime's own forks (os/exec) are raw clone calls that run no atfork
 * handler, as are posix_spawn and vfork. */
static volatile int forked = 0;
static void mark_forked(void) { forked = 1; }
__attribute__((constructor)) static void bioxen__atfork_init(void) { pthread_atfork(NULL, NULL, mark_forked); }

static int forked_fail(void) {
  static const char m[] =
      "libbioxen cannot be used in a child of fork(): the Go runtime inside it does not survive fork "
      "(use it in the parent, or exec a new program in the child)";
  bioxen__set_err(m, sizeof m - 1);
  return BIOXEN_ERROR;
}
static int in_log_callback(void);
static int log_callback_fail(void) {
  static const char m[] =
      "libbioxen was called from inside its log callback, which must not call back into it: the call "
      "would wait for a log line that waits for the callback (hand the work to another thread)";
  bioxen__set_err(m, sizeof m - 1);
  return BIOXEN_E_INVALID;
}
/* Every entry into the Go runtime starts with this: refused in a child of
 * fork(), and from inside the log callback (bioxen.h: "Logging"). */
#define BIOXEN_NOT_FORKED(...)        \
  do {                                \
    if (forked) {                     \
      __VA_ARGS__;                    \
      return forked_fail();           \
    }                                 \
    if (in_log_callback()) {          \
      __VA_ARGS__;                    \
      return log_callback_fail();     \
    }                                 \
  } while (0)

/* The calling thread's interrupt watcher (bioxen_set_interrupt_fd), 0 for
 * none: a watcher id kept in a pthread key, as the error messages are. */
static pthread_key_t intrkey;
static pthread_once_t intrkey_once = PTHREAD_ONCE_INIT;

static void intrkey_init(void) { pthread_key_create(&intrkey, NULL); }

uint64_t bioxen__interrupt_id(void) {
  pthread_once(&intrkey_once, intrkey_init);
  return (uint64_t)(uintptr_t)pthread_getspecific(intrkey);
}

int bioxen_set_interrupt_fd(int fd) {
  BIOXEN_NOT_FORKED();
  uint64_t id = 0;
  int status = bioxenGoSetInterruptFd(fd, bioxen__interrupt_id(), &id);
  if (status == BIOXEN_OK) pthread_setspecific(intrkey, (void *)(uintptr_t)id);
  return status;
}

/* The host callbacks (listeners, the log callback) running on the calling
 * thread, innermost first: a frame on the C stack per call, linked from a
 * pthread key. A callback may call back into libbioxen, which must then not
 * wait for the very call it is made from (capi/callbacks.go). */
struct cbframe {
  uint64_t gate;    /* the callback's gate id (capi/callbacks.go) */
  uint64_t session; /* the session whose listener this is, 0 for the log callback */
  uint64_t vm;      /* that session's VM */
  struct cbframe *prev;
};
static pthread_key_t cbkey;
static pthread_once_t cbkey_once = PTHREAD_ONCE_INIT;

static void cbkey_init(void) { pthread_key_create(&cbkey, NULL); }

static struct cbframe *cbtop(void) {
  pthread_once(&cbkey_once, cbkey_init);
  return pthread_getspecific(cbkey);
}

int bioxen__in_callback(uint64_t gate, uint64_t session, uint64_t vm) {
  for (struct cbframe *f = cbtop(); f; f = f->prev) {
    if ((gate && f->gate == gate) || (session && f->session == session) || (vm && f->vm == vm)) return 1;
  }
  return 0;
}

/* Whether the calling thread runs the log callback (a frame with no
 * session), where any call that can log waited for itself forever. */
static int in_log_callback(void) {
  for (struct cbframe *f = cbtop(); f; f = f->prev) {
    if (!f->session) return 1;
  }
  return 0;
}

void bioxen__call_log(bioxen_log_fn fn, uintptr_t ud, int level, const char *msg, uint64_t gate) {
  struct cbframe f = {gate, 0, 0, cbtop()};
  pthread_setspecific(cbkey, &f);
  fn((void *)ud, level, msg);
  pthread_setspecific(cbkey, f.prev);
}

void bioxen__call_output(bioxen_output_fn fn, uintptr_t ud, int stream, const char *data, size_t len,
                         uint64_t gate, uint64_t session, uint64_t vm) {
  struct cbframe f = {gate, session, vm, cbtop()};
  pthread_setspecific(cbkey, &f);
  fn((void *)ud, stream, data, len);
  pthread_setspecific(cbkey, f.prev);
}

void bioxen__call_done(bioxen_exec_done_fn fn, uintptr_t ud, int status, bioxen_result *result, const char *msg) {
  fn((void *)ud, status, result, msg ? msg : "");
}

void bioxen_free(void *p) { free(p); }

int bioxen_vm_exec_async(bioxen_vm vm, const char *code, size_t code_len, int64_t timeout_ms,
                         int flags, bioxen_exec_done_fn done, void *userdata) {
  BIOXEN_NOT_FORKED();
  return bioxenGoVMExecAsync(vm, (char *)code, code_len, timeout_ms, flags, done, (uintptr_t)userdata, NULL);
}
int bioxen_vm_exec_async_v2(bioxen_vm vm, const char *code, size_t code_len, int64_t timeout_ms,
                            int flags, bioxen_exec_done_fn done, void *userdata,
                            bioxen_call *call_out) {
  BIOXEN_NOT_FORKED(if (call_out) *call_out = 0);
  return bioxenGoVMExecAsync(vm, (char *)code, code_len, timeout_ms, flags, done, (uintptr_t)userdata, call_out);
}
int bioxen_call_interrupt(bioxen_call call) {
  BIOXEN_NOT_FORKED();
  return bioxenGoCallInterrupt(call);
}

int bioxen_session_open(bioxen_vm vm, bioxen_session *session_out) {
  BIOXEN_NOT_FORKED(if (session_out) *session_out = 0);
  return bioxenGoSessionOpen(vm, session_out);
}
int bioxen_session_close(bioxen_session s) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSessionClose(s);
}
int bioxen_session_send(bioxen_session s, const char *input, size_t len) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSessionSend(s, (char *)input, len);
}
int bioxen_session_read(bioxen_session s, int streams, int64_t timeout_ms, char **data_out, size_t *len_out) {
  BIOXEN_NOT_FORKED(if (data_out) *data_out = NULL; if (len_out) *len_out = 0);
  return bioxenGoSessionRead(s, streams, timeout_ms, data_out, len_out);
}
int bioxen_session_execute(bioxen_session s, const char *code, size_t code_len, int64_t timeout_ms,
                           int flags, bioxen_result **result_out) {
  BIOXEN_NOT_FORKED(if (result_out) *result_out = NULL);
  return bioxenGoSessionExecute(s, (char *)code, code_len, timeout_ms, flags, result_out);
}
int bioxen_session_execute_async(bioxen_session s, const char *code, size_t code_len,
                                 int64_t timeout_ms, int flags, bioxen_exec_done_fn done,
                                 void *userdata) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSessionExecuteAsync(s, (char *)code, code_len, timeout_ms, flags, done, (uintptr_t)userdata, NULL);
}
int bioxen_session_execute_async_v2(bioxen_session s, const char *code, size_t code_len,
                                    int64_t timeout_ms, int flags, bioxen_exec_done_fn done,
                                    void *userdata, bioxen_call *call_out) {
  BIOXEN_NOT_FORKED(if (call_out) *call_out = 0);
  return bioxenGoSessionExecuteAsync(s, (char *)code, code_len, timeout_ms, flags, done, (uintptr_t)userdata, call_out);
}
int bioxen_session_wait(bioxen_session s, int64_t timeout_ms, int *idle_out) {
  BIOXEN_NOT_FORKED(if (idle_out) *idle_out = 0);
  return bioxenGoSessionWait(s, timeout_ms, idle_out);
}
int bioxen_session_status(bioxen_session s, int *busy_out, int *pending_out) {
  BIOXEN_NOT_FORKED(if (busy_out) *busy_out = 0; if (pending_out) *pending_out = 0);
  return bioxenGoSessionStatus(s, busy_out, pending_out);
}
int bioxen_session_interrupt(bioxen_session s) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSessionInterrupt(s);
}
int bioxen_session_set_listener(bioxen_session s, bioxen_output_fn fn, void *userdata) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSessionSetListener(s, fn, (uintptr_t)userdata);
}

int bioxen_vm_open(const bioxen_vm_options *opts, bioxen_vm *vm_out) {
  BIOXEN_NOT_FORKED(if (vm_out) *vm_out = 0);
  return bioxenGoVMOpen((bioxen_vm_options *)opts, vm_out);
}

int bioxen_vm_close(bioxen_vm vm) {
  BIOXEN_NOT_FORKED();
  return bioxenGoVMClose(vm);
}

int bioxen_vm_exec(bioxen_vm vm, const char *code, size_t code_len,
                   int64_t timeout_ms, int flags, bioxen_result **result_out) {
  BIOXEN_NOT_FORKED(if (result_out) *result_out = NULL);
  return bioxenGoVMExec(vm, (char *)code, code_len, timeout_ms, flags, result_out);
}

int bioxen_vm_exec_file(bioxen_vm vm, const char *path, int64_t timeout_ms,
                        bioxen_result **result_out) {
  BIOXEN_NOT_FORKED(if (result_out) *result_out = NULL);
  return bioxenGoVMExecFile(vm, (char *)path, timeout_ms, result_out);
}

void bioxen_result_free(bioxen_result *r) {
  if (!r) return;
  free(r->stdout_data); /* one block holds all four buffers (capi.go newResult) */
  free(r);
}

int bioxen_set_log_callback(bioxen_log_fn fn, void *userdata, int min_level) {
  BIOXEN_NOT_FORKED();
  return bioxenGoSetLog(fn, (uintptr_t)userdata, min_level);
}

int bioxen_packages(const char *request_json, size_t len, char **response_out, size_t *response_len) {
  BIOXEN_NOT_FORKED(if (response_out) *response_out = NULL; if (response_len) *response_len = 0);
  return bioxenGoPackages((char *)request_json, len, response_out, response_len);
}

int bioxen_remote(const char *request_json, size_t len, char **response_out, size_t *response_len) {
  BIOXEN_NOT_FORKED(if (response_out) *response_out = NULL; if (response_len) *response_len = 0);
  return bioxenGoRemote((char *)request_json, len, response_out, response_len);
}

int bioxen_vm_install_package(bioxen_vm vm, const char *request_json, size_t len, char **response_out,
                              size_t *response_len) {
  BIOXEN_NOT_FORKED(if (response_out) *response_out = NULL; if (response_len) *response_len = 0);
  return bioxenGoVMInstallPackage(vm, (char *)request_json, len, response_out, response_len);
}

int bioxen_live_handles(void) {
  if (forked) return 0;
  return bioxenGoLiveHandles();
}
