/* Internal helpers shared by capi.go and shim.c; not part of the API. */
#ifndef BIOXEN_SHIM_H
#define BIOXEN_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include "bioxen.h"
void bioxen__set_err(const char *msg, size_t n);
void bioxen__call_log(bioxen_log_fn fn, uintptr_t ud, int level, const char *msg, uint64_t gate);
void bioxen__call_output(bioxen_output_fn fn, uintptr_t ud, int stream, const char *data, size_t len,
                         uint64_t gate, uint64_t session, uint64_t vm);
int bioxen__in_callback(uint64_t gate, uint64_t session, uint64_t vm);
void bioxen__call_done(bioxen_exec_done_fn fn, uintptr_t ud, int status, bioxen_result *result, const char *msg);
uint64_t bioxen__interrupt_id(void);
#endif
