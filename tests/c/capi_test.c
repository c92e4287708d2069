/* capi_test: a C host of libbioxen. It opens VMs on the embedded engine (and
 * the process engine when an interpreter name is given as argv[1]), runs Lua,
 * reads stdout/stderr/values, provokes errors, checks the status codes and
 * messages, frees everything and checks that no handle is left. Run under
 * valgrind by `make test`, which fails on a leak or an invalid access. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bioxen.h"

static int failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      failures++;                                          \
    }                                                      \
  } while (0)

static bioxen_result *run(bioxen_vm vm, const char *code, int flags) {
  bioxen_result *r = NULL;
  int rc = bioxen_vm_exec(vm, code, strlen(code), 0, flags, &r);
  CHECK(rc == BIOXEN_OK, "exec %s: status %d (%s)", code, rc, bioxen_errmsg());
  return r;
}

static void contract(const char *engine, const char *interp) {
  bioxen_vm_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.engine = engine;
  o.interpreter = interp;
  bioxen_vm vm = 0;
  int rc = bioxen_vm_open(&o, &vm);
  CHECK(rc == BIOXEN_OK && vm != 0, "open %s: %d %s", engine, rc, bioxen_errmsg());
  if (rc != BIOXEN_OK) return;

  bioxen_result *r = run(vm, "return 2 + 2", BIOXEN_EXEC_PRINT_RESULTS);
  if (r) {
    CHECK(r->success == 1 && r->return_code == 0, "return: success %d rc %d", r->success, r->return_code);
    CHECK(r->stdout_len == 2 && memcmp(r->stdout_data, "4\n", 2) == 0, "stdout '%s'", r->stdout_data);
    CHECK(strcmp(r->values_json, "[4]") == 0, "values %s", r->values_json);
    CHECK(r->stderr_len == 0 && r->stderr_data[0] == 0, "stderr '%s'", r->stderr_data);
    bioxen_result_free(r);
  }

  r = run(vm, "io.stderr:write('warn') print('a\\0b')", 0);
  if (r) {
    CHECK(r->stdout_len == 4 && memcmp(r->stdout_data, "a\0b\n", 4) == 0, "binary stdout len %zu", r->stdout_len);
    CHECK(strcmp(r->stderr_data, "warn") == 0, "stderr '%s'", r->stderr_data);
    bioxen_result_free(r);
  }

  r = run(vm, "local t = nil\nreturn t.x", 0);
  if (r) {
    CHECK(r->success == 0 && r->return_code == 1, "runtime error: success %d rc %d", r->success, r->return_code);
    CHECK(strstr(r->stderr_data, "input:2:") != NULL, "no chunk:line in '%s'", r->stderr_data);
    CHECK(strstr(r->stderr_data, "stack traceback") != NULL, "no traceback in '%s'", r->stderr_data);
    CHECK(r->error_len > 0 && strstr(r->error_message, "input:2:") != NULL, "error_message '%s'", r->error_message);
    bioxen_result_free(r);
  }

  r = run(vm, "x = = 1", 0);
  if (r) {
    CHECK(r->success == 0 && strstr(r->stderr_data, "input:1:") != NULL, "syntax error '%s'", r->stderr_data);
    bioxen_result_free(r);
  }

  /* Errors of the call itself: status codes and messages. */
  r = (bioxen_result *)1;
  rc = bioxen_vm_exec(vm, "", 0, 0, 0, &r);
  CHECK(rc == BIOXEN_E_INVALID && r == NULL, "empty code: %d", rc);
  CHECK(strstr(bioxen_errmsg(), "empty") != NULL, "errmsg '%s'", bioxen_errmsg());
  rc = bioxen_vm_exec(vm, "a\0b", 3, 0, 0, &r);
  CHECK(rc == BIOXEN_E_INVALID, "NUL byte: %d", rc);
  rc = bioxen_vm_exec(vm, NULL, 1, 0, 0, &r);
  CHECK(rc == BIOXEN_E_INVALID, "NULL code: %d", rc);
  rc = bioxen_vm_exec(vm, "return 1", 8, 0, 0, NULL);
  CHECK(rc == BIOXEN_E_INVALID, "NULL result_out: %d", rc);
  rc = bioxen_vm_exec(vm, "while true do end", 17, 50, 0, &r);
  CHECK(rc == BIOXEN_E_TIMEOUT && r == NULL, "timeout: %d", rc);
  CHECK(strstr(bioxen_errmsg(), "timeout") != NULL, "timeout errmsg '%s'", bioxen_errmsg());
  r = run(vm, "print(1 + 1)", 0); /* usable after the timeout */
  if (r) {
    CHECK(strcmp(r->stdout_data, "2\n") == 0, "after timeout '%s'", r->stdout_data);
    bioxen_result_free(r);
  }
  rc = bioxen_vm_exec_file(vm, "/nonexistent/script.lua", 0, &r);
  CHECK(rc == BIOXEN_E_FILE_NOT_FOUND, "missing file: %d", rc);

  CHECK(bioxen_vm_close(vm) == BIOXEN_OK, "close");
  rc = bioxen_vm_close(vm);
  CHECK(rc == BIOXEN_E_BADHANDLE, "double close: %d", rc);
  rc = bioxen_vm_exec(vm, "return 1", 8, 0, 0, &r);
  CHECK(rc == BIOXEN_E_BADHANDLE, "use after close: %d", rc);
}

static void *worker(void *arg) {
  bioxen_vm vm = *(bioxen_vm *)arg;
  for (int i = 0; i < 50; i++) {
    bioxen_result *r = NULL;
    if (bioxen_vm_exec(vm, "return 1", 8, 0, 0, &r) == BIOXEN_OK) bioxen_result_free(r);
    else failures++;
    /* an error on this thread leaves a message for this thread only */
    if (bioxen_vm_exec(vm, "", 0, 0, 0, &r) != BIOXEN_E_INVALID) failures++;
    if (strstr(bioxen_errmsg(), "empty") == NULL) failures++;
  }
  return NULL;
}

static int logged = 0;
static void on_log(void *ud, int level, const char *msg) {
  (void)ud;
  (void)msg;
  if (level >= 10) logged++;
}

int main(int argc, char **argv) {
  CHECK(bioxen_version_number() == BIOXEN_VERSION_NUMBER, "version %d", bioxen_version_number());
  CHECK(strcmp(bioxen_version(), BIOXEN_VERSION) == 0, "version %s", bioxen_version());
  CHECK(strcmp(bioxen_errstr(BIOXEN_E_TIMEOUT), "timeout") == 0, "errstr");
  CHECK(strcmp(bioxen_errmsg(), "") == 0, "fresh thread errmsg '%s'", bioxen_errmsg());
  CHECK(bioxen_set_log_callback(on_log, NULL, 10) == BIOXEN_OK, "set log");
  CHECK(bioxen_vm_close(0) == BIOXEN_OK, "close(0)");

  bioxen_vm bad = 0;
  bioxen_vm_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.engine = "nonsense";
  CHECK(bioxen_vm_open(&o, &bad) == BIOXEN_E_INVALID && bad == 0, "unknown engine");
  CHECK(strstr(bioxen_errmsg(), "embedded") != NULL, "engine list in '%s'", bioxen_errmsg());
  CHECK(bioxen_vm_open(NULL, NULL) == BIOXEN_E_INVALID, "NULL vm_out");

  contract("embedded", NULL);
  if (argc > 1) {
    contract("process", argv[1]);
    o.engine = "process";
    o.interpreter = "no-such-lua-interpreter";
    CHECK(bioxen_vm_open(&o, &bad) == BIOXEN_E_LUA_NOT_FOUND, "missing interpreter");
  }

  /* Many threads on one VM. */
  bioxen_vm shared = 0;
  CHECK(bioxen_vm_open(NULL, &shared) == BIOXEN_OK, "open shared");
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, &shared);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  CHECK(bioxen_vm_close(shared) == BIOXEN_OK, "close shared");

  CHECK(logged > 0, "no log line reached the callback");
  CHECK(bioxen_set_log_callback(NULL, NULL, 0) == BIOXEN_OK, "unset log");
  CHECK(bioxen_live_handles() == 0, "%d handles left open", bioxen_live_handles());
  if (failures) {
    fprintf(stderr, "capi_test: %d failures\n", failures);
    return 1;
  }
  printf("capi_test: all checks passed\n");
  return 0;
}
