/* Internal helpers shared by capi.go and shim.c; not part of the API. */
#ifndef BIOXEN_SHIM_H
#define BIOXEN_SHIM_H
#include <stddef.h>
#include "bioxen.h"
void bioxen__set_err(const char *msg, size_t n);
void bioxen__call_log(bioxen_log_fn fn, void *ud, int level, const char *msg);
#endif
