/*
 * eventfd create/read/write and close(2). eventfds are non-blocking and
 * close-on-exec; an empty counter reads as 0 and a saturated one swallows the
 * write, so neither condition ever reaches the caller as an error.
 */
#include "napi_util.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* eventfdCreate(initial = 0) -> fd */
static napi_value efd_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  int64_t initial;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_int_opt(env, argv[0], "initial", 0, UINT32_MAX, 0, &initial))
    return NULL;
  int fd = eventfd((unsigned int)initial, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "eventfd");
    return NULL;
  }
  return make_number(env, fd);
}

/* eventfdRead(fd) -> counter (0 when nothing is pending). Counters above 2^53
 * lose precision in the conversion to a JS number; callers only test > 0. */
static napi_value efd_read(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  uint64_t value;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  ssize_t n;
  do
    n = read(fd, &value, sizeof value);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return make_number(env, 0);
    throw_errno(env, errno, "read");
    return NULL;
  }
  if (n != sizeof value) {
    /* Not an eventfd: an eventfd read is always exactly 8 bytes. */
    throw_errno(env, EINVAL, "read");
    return NULL;
  }
  napi_value out;
  NAPI_CALL(env, napi_create_double(env, (double)value, &out));
  return out;
}

/* eventfdWrite(fd, value = 1) */
static napi_value efd_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {NULL, NULL};
  int fd;
  int64_t value;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int_opt(env, argv[1], "value", 0, MAX_SAFE_INTEGER, 1, &value))
    return NULL;
  uint64_t v = (uint64_t)value;
  ssize_t n;
  do
    n = write(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  /* EAGAIN: the counter is saturated, so the reader is already due to wake. */
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    throw_errno(env, errno, "write");
    return NULL;
  }
  if (n >= 0 && n != sizeof v) {
    throw_errno(env, EINVAL, "write");
    return NULL;
  }
  return make_undefined(env);
}

/* close(fd) */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  /* On Linux the fd is released even when close() reports EINTR, so EINTR is
   * success and must not be retried (the number may already be reused). */
  if (close(fd) < 0 && errno != EINTR) {
    throw_errno(env, errno, "close");
    return NULL;
  }
  return make_undefined(env);
}

bool register_eventfd(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"eventfdCreate", NULL, efd_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdRead", NULL, efd_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdWrite", NULL, efd_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0],
                                props) == napi_ok;
}
