/*
 * Unix stream sockets: listen, connect, accept, socketpair, O_NONBLOCK.
 * Every fd is close-on-exec and non-blocking. Owns no policy: it never
 * unlinks a stale socket file and never retries; message transfer with fds
 * lives in messages.c.
 */
#include "napi_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Node's default listen backlog. */
#define DEFAULT_BACKLOG 511

static bool arg_sockaddr(napi_env env, napi_value v, struct sockaddr_un *addr,
                         socklen_t *addrlen, const char *syscall) {
  size_t len;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (!arg_path(env, v, "path", addr->sun_path, sizeof addr->sun_path, &len,
                syscall))
    return false;
  *addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  return true;
}

/* Close fd without disturbing the errno being reported. */
static void close_keep_errno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

/* unixListen(path, mode, backlog?) -> fd */
static napi_value unix_listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  struct sockaddr_un addr;
  socklen_t addrlen;
  int64_t mode, backlog;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_sockaddr(env, argv[0], &addr, &addrlen, "bind") ||
      !arg_int(env, argv[1], "mode", 0, 07777, &mode) ||
      !arg_int_opt(env, argv[2], "backlog", 0, INT32_MAX, DEFAULT_BACKLOG,
                   &backlog))
    return NULL;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket");
    return NULL;
  }
  const char *failed = NULL;
  if (bind(fd, (struct sockaddr *)&addr, addrlen) < 0)
    failed = "bind";
  /* The mode is set before listen(): until then a connect() is refused, so no
   * client can get in under the umask-derived mode. fchmod() on a socket fd
   * does not reach the file system node, hence chmod() on the path. */
  else if (chmod(addr.sun_path, (mode_t)mode) < 0)
    failed = "chmod";
  else if (listen(fd, (int)backlog) < 0)
    failed = "listen";
  if (failed != NULL) {
    close_keep_errno(fd);
    throw_errno(env, errno, failed);
    return NULL;
  }
  return make_number(env, fd);
}

/* unixConnect(path) -> fd. The connect itself is non-blocking: on AF_UNIX it
 * either completes at once or fails with EAGAIN when the listener's backlog is
 * full, so it can never stall the event loop. */
static napi_value unix_connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct sockaddr_un addr;
  socklen_t addrlen;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_sockaddr(env, argv[0], &addr, &addrlen, "connect"))
    return NULL;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket");
    return NULL;
  }
  int rc;
  do
    rc = connect(fd, (struct sockaddr *)&addr, addrlen);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    close_keep_errno(fd);
    throw_errno(env, errno, "connect");
    return NULL;
  }
  return make_number(env, fd);
}

/* unixAccept(listenFd) -> fd, or -1 when no connection is pending. */
static napi_value unix_accept(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int lfd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "listenFd", &lfd))
    return NULL;
  int fd;
  do
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return make_number(env, -1);
    throw_errno(env, errno, "accept4");
    return NULL;
  }
  return make_number(env, fd);
}

/* socketPair() -> [fd, fd] */
static napi_value socket_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) <
      0) {
    throw_errno(env, errno, "socketpair");
    return NULL;
  }
  napi_value pair, a, b;
  if (napi_create_array_with_length(env, 2, &pair) != napi_ok ||
      napi_create_int32(env, sv[0], &a) != napi_ok ||
      napi_create_int32(env, sv[1], &b) != napi_ok ||
      napi_set_element(env, pair, 0, a) != napi_ok ||
      napi_set_element(env, pair, 1, b) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    throw_napi_failure(env, "socketPair result");
    return NULL;
  }
  return pair;
}

/* setNonBlocking(fd) */
static napi_value set_non_blocking(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw_errno(env, errno, "fcntl");
    return NULL;
  }
  return make_undefined(env);
}

bool register_sockets(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"unixListen", NULL, unix_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixConnect", NULL, unix_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixAccept", NULL, unix_accept, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketPair", NULL, socket_pair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNonBlocking", NULL, set_non_blocking, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0],
                                props) == napi_ok;
}
