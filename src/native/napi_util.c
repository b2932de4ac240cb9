/*
 * Error throwing and argument validation shared by the addon's modules.
 * Errors mirror Node's own: system errors carry code/errno/syscall, bad
 * argument types are TypeErrors with code ERR_INVALID_ARG_TYPE, bad values are
 * RangeErrors with code ERR_OUT_OF_RANGE. Knows nothing about any syscall.
 */
#include "napi_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_property(napi_env env, napi_value obj, const char *key,
                         napi_value value) {
  if (value != NULL)
    napi_set_named_property(env, obj, key, value);
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v = NULL;
  if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok)
    return NULL;
  return v;
}

void throw_errno(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err);
  const char *desc = strerrordesc_np(err);
  char message[256];
  if (name == NULL)
    name = "UNKNOWN";
  if (desc == NULL)
    desc = "Unknown error";
  snprintf(message, sizeof message, "%s: %s, %s", name, desc, syscall);

  napi_value code = make_string(env, name);
  napi_value msg = make_string(env, message);
  napi_value error = NULL;
  if (code == NULL || msg == NULL ||
      napi_create_error(env, code, msg, &error) != napi_ok) {
    throw_napi_failure(env, "napi_create_error");
    return;
  }
  /* Node's system errors carry the negated errno (libuv's convention). */
  set_property(env, error, "errno", make_number(env, -(int64_t)err));
  set_property(env, error, "syscall", make_string(env, syscall));
  napi_throw(env, error);
}

void throw_napi_failure(napi_env env, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
    return;
  const napi_extended_error_info *info = NULL;
  char message[256];
  napi_get_last_error_info(env, &info);
  snprintf(message, sizeof message, "%s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message
                                                       : "unknown error");
  napi_throw_error(env, "ERR_NAPI_CALL", message);
}

void throw_type_error(napi_env env, const char *code, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_type_error(env, code, message);
}

void throw_range_error(napi_env env, const char *fmt, ...) {
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

static bool is_type(napi_env env, napi_value v, napi_valuetype want) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && t == want;
}

bool arg_int(napi_env env, napi_value v, const char *name, int64_t min,
             int64_t max, int64_t *out) {
  double d;
  if (!is_type(env, v, napi_number) ||
      napi_get_value_double(env, v, &d) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"%s\" argument must be of type number", name);
    return false;
  }
  /* Comparing as doubles is exact: min and max are within ±2^53. */
  if (!isfinite(d) || trunc(d) != d || d < (double)min || d > (double)max) {
    throw_range_error(env,
                      "The value of \"%s\" is out of range. It must be an "
                      "integer >= %lld and <= %lld. Received %g",
                      name, (long long)min, (long long)max, d);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

bool arg_int_opt(napi_env env, napi_value v, const char *name, int64_t min,
                 int64_t max, int64_t dflt, int64_t *out) {
  if (v == NULL || is_type(env, v, napi_undefined)) {
    *out = dflt;
    return true;
  }
  return arg_int(env, v, name, min, max, out);
}

bool arg_fd(napi_env env, napi_value v, const char *name, int *out) {
  int64_t fd;
  if (!arg_int(env, v, name, INT32_MIN, INT32_MAX, &fd))
    return false;
  *out = (int)fd;
  return true;
}

bool arg_bool(napi_env env, napi_value v, const char *name, bool *out) {
  if (!is_type(env, v, napi_boolean) ||
      napi_get_value_bool(env, v, out) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"%s\" argument must be of type boolean", name);
    return false;
  }
  return true;
}

bool arg_path(napi_env env, napi_value v, const char *name, char *buf,
              size_t cap, size_t *len, const char *syscall) {
  size_t n;
  if (!is_type(env, v, napi_string) ||
      napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"%s\" argument must be of type string", name);
    return false;
  }
  if (n >= cap) {
    throw_errno(env, ENAMETOOLONG, syscall);
    return false;
  }
  if (napi_get_value_string_utf8(env, v, buf, cap, len) != napi_ok) {
    throw_napi_failure(env, "napi_get_value_string_utf8");
    return false;
  }
  if (*len == 0 || strlen(buf) != *len) {
    throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                     "The \"%s\" argument must be a non-empty string without "
                     "null bytes",
                     name);
    return false;
  }
  return true;
}

bool arg_byte_range(napi_env env, napi_value array, napi_value offset,
                    napi_value length, uint8_t **data, size_t *n) {
  bool is_typed = false;
  napi_typedarray_type type;
  size_t size = 0;
  void *base = NULL;
  if (napi_is_typedarray(env, array, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, array, &type, &size, &base, NULL, NULL) !=
          napi_ok ||
      type != napi_uint8_array) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"buf\" argument must be an instance of Uint8Array");
    return false;
  }
  int64_t off, len;
  if (!arg_int(env, offset, "offset", 0, (int64_t)size, &off))
    return false;
  /* A zero-length recvmsg on a stream socket returns 0, which reads as EOF. */
  if (size - (size_t)off == 0) {
    throw_range_error(env, "The byte range is empty: offset %lld of %zu bytes",
                      (long long)off, size);
    return false;
  }
  if (!arg_int(env, length, "length", 1, (int64_t)(size - (size_t)off), &len))
    return false;
  *data = (uint8_t *)base + off;
  *n = (size_t)len;
  return true;
}

napi_value make_number(napi_env env, int64_t v) {
  napi_value out = NULL;
  if (napi_create_int64(env, v, &out) != napi_ok)
    throw_napi_failure(env, "napi_create_int64");
  return out;
}

napi_value make_undefined(napi_env env) {
  napi_value out = NULL;
  napi_get_undefined(env, &out);
  return out;
}
