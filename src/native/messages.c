/*
 * recvmsg/sendmsg on stream sockets with up to MAX_FDS file descriptors as
 * SCM_RIGHTS. Never blocks (MSG_DONTWAIT, also on an fd left blocking) and
 * never leaks a received fd: anything unexpected in the control data closes
 * every fd that arrived. Knows nothing of the bytes it moves.
 */
#include "napi_util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The vhost-user limit; also the room recvmsg reserves for fds. */
#define MAX_FDS 8

typedef union {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
} control_t;

static void close_all(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
}

/* Collect the fds of every SCM_RIGHTS message into fds[MAX_FDS]. Returns false
 * if the control data held anything else or more fds than fit; the fds are
 * collected (and *n counts them) either way so the caller can close them. */
static bool collect_fds(struct msghdr *msg, int *fds, size_t *n) {
  bool clean = (msg->msg_flags & MSG_CTRUNC) == 0;
  *n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL;
       c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      clean = false;
      continue;
    }
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*n < MAX_FDS) {
        fds[(*n)++] = fd;
      } else {
        /* Cannot happen with a control buffer sized for MAX_FDS; closing
         * keeps the no-leak promise should the kernel ever differ. */
        close(fd);
        clean = false;
      }
    }
  }
  return clean;
}

static napi_value recv_result(napi_env env, ssize_t bytes, const int *fds,
                              size_t n) {
  napi_value result, array, v;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_int64(env, bytes, &v) != napi_ok ||
      napi_set_named_property(env, result, "bytes", v) != napi_ok ||
      napi_create_array_with_length(env, n, &array) != napi_ok)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (napi_create_int32(env, fds[i], &v) != napi_ok ||
        napi_set_element(env, array, (uint32_t)i, v) != napi_ok)
      return NULL;
  }
  if (napi_set_named_property(env, result, "fds", array) != napi_ok)
    return NULL;
  return result;
}

/* recvMsg(fd, buf, offset, length) -> { bytes, fds } | null (EAGAIN) */
static napi_value recv_msg(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int fd;
  uint8_t *data;
  size_t len;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_byte_range(env, argv[1], argv[2], argv[3], &data, &len))
    return NULL;

  control_t control;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t n;
  do
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_value null;
      NAPI_CALL(env, napi_get_null(env, &null));
      return null;
    }
    throw_errno(env, errno, "recvmsg");
    return NULL;
  }

  int fds[MAX_FDS];
  size_t nfds;
  if (!collect_fds(&msg, fds, &nfds)) {
    close_all(fds, nfds);
    throw_errno(env, EMSGSIZE, "recvmsg");
    return NULL;
  }
  napi_value result = recv_result(env, n, fds, nfds);
  if (result == NULL) {
    close_all(fds, nfds);
    throw_napi_failure(env, "recvMsg result");
  }
  return result;
}

/* Read the optional fd list into fds[MAX_FDS]; more than MAX_FDS is a RangeError. */
static bool arg_fd_list(napi_env env, napi_value v, int *fds, size_t *n) {
  napi_valuetype t;
  bool is_array = false;
  uint32_t count;
  *n = 0;
  if (v == NULL || (napi_typeof(env, v, &t) == napi_ok && t == napi_undefined))
    return true;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, v, &count) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"fds\" argument must be an array of numbers");
    return false;
  }
  if (count > MAX_FDS) {
    throw_range_error(env,
                      "The value of \"fds.length\" is out of range. It must be "
                      "<= %d. Received %u",
                      MAX_FDS, count);
    return false;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value e;
    if (napi_get_element(env, v, i, &e) != napi_ok) {
      throw_napi_failure(env, "napi_get_element");
      return false;
    }
    if (!arg_fd(env, e, "fds[i]", &fds[i]))
      return false;
  }
  *n = count;
  return true;
}

/* sendMsg(fd, buf, offset, length, fds?) -> bytes sent, or -1 (EAGAIN) */
static napi_value send_msg(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int fd;
  uint8_t *data;
  size_t len;
  int fds[MAX_FDS];
  size_t nfds;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_byte_range(env, argv[1], argv[2], argv[3], &data, &len) ||
      !arg_fd_list(env, argv[4], fds, &nfds))
    return NULL;

  control_t control;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return make_number(env, -1);
    throw_errno(env, errno, "sendmsg");
    return NULL;
  }
  return make_number(env, n);
}

bool register_messages(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"recvMsg", NULL, recv_msg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendMsg", NULL, send_msg, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0],
                                props) == napi_ok;
}
