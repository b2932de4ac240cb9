/*
 * Shared plumbing of the vhost_native addon: Node-style error throwing and
 * argument validation. Owns no syscalls and no state; every other C module of
 * the addon includes this header and registers its exports through one
 * register_*() function declared at the bottom.
 */
#ifndef VHOST_NATIVE_NAPI_UTIL_H
#define VHOST_NATIVE_NAPI_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Number.MAX_SAFE_INTEGER: the largest integer a JS number carries exactly. */
#define MAX_SAFE_INTEGER INT64_C(9007199254740991)

/* Evaluate an N-API call; on failure make sure an exception is pending and
 * return NULL from the calling napi_callback. Only for calls made while the
 * function holds no resource that would leak on the early return. */
#define NAPI_CALL(env, call)                                                   \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      throw_napi_failure((env), #call);                                        \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

/* Throw Node's errno error: Error with code 'EBADF', errno -9 (negative, as
 * Node's own system errors), syscall, message "EBADF: Bad file descriptor, close". */
void throw_errno(napi_env env, int err, const char *syscall);

/* Throw an Error for a failed N-API call unless an exception is already pending. */
void throw_napi_failure(napi_env env, const char *what);

/* TypeError with code ERR_INVALID_ARG_TYPE (or the given code), printf-style message. */
void throw_type_error(napi_env env, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* RangeError with code ERR_OUT_OF_RANGE, printf-style message. */
void throw_range_error(napi_env env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A JS number that is an integer in [min, max] (both within ±2^53), else throw. */
bool arg_int(napi_env env, napi_value v, const char *name, int64_t min,
             int64_t max, int64_t *out);

/* Like arg_int, but undefined yields dflt. */
bool arg_int_opt(napi_env env, napi_value v, const char *name, int64_t min,
                 int64_t max, int64_t dflt, int64_t *out);

/* A file descriptor: any int32. Negative values are passed on to the syscall,
 * which reports EBADF the way the kernel does. */
bool arg_fd(napi_env env, napi_value v, const char *name, int *out);

bool arg_bool(napi_env env, napi_value v, const char *name, bool *out);

/* A string without NUL characters copied into buf[cap]; *len excludes the
 * terminator. A string of cap bytes or more throws ENAMETOOLONG for syscall. */
bool arg_path(napi_env env, napi_value v, const char *name, char *buf,
              size_t cap, size_t *len, const char *syscall);

/* A Uint8Array and a byte range [offset, offset+length) inside it, length >= 1.
 * *data points at the first byte of the range. */
bool arg_byte_range(napi_env env, napi_value array, napi_value offset,
                    napi_value length, uint8_t **data, size_t *n);

/* Create a JS number from an integer known to be within ±2^53. */
napi_value make_number(napi_env env, int64_t v);

napi_value make_undefined(napi_env env);

/* One module each; called once from the module's init. */
bool register_sockets(napi_env env, napi_value exports);
bool register_messages(napi_env env, napi_value exports);
bool register_memory(napi_env env, napi_value exports);
bool register_eventfd(napi_env env, napi_value exports);
bool register_poller(napi_env env, napi_value exports);
bool register_uring(napi_env env, napi_value exports);
bool register_fileops(napi_env env, napi_value exports);

#endif
