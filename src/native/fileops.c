/*
 * File and block-device syscalls Node does not offer: open-file-description
 * locks, block-device geometry, direct-I/O alignment, fallocate / BLKDISCARD
 * run on the libuv thread pool, and synchronous preadv2 / pwritev2 /
 * fdatasync / fallocate straight into caller buffers (for images in memory,
 * where the copy is all the work there is).
 *
 * Mechanism only: which lock to take, what a refused lock means and how to
 * react to an errno are the caller's policy. The asynchronous calls report
 * like an io_uring completion, a result number that is 0 or a negative errno,
 * to a callback given once together with a context value: callback(context,
 * res). They allocate one small record per call and are meant for the rarer
 * operations (the threads I/O engine, discards on block devices). The
 * synchronous calls return the same number and allocate nothing.
 */
#include "iovec.h"
#include "napi_util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ofdLock(fd, exclusive) -> boolean: an OFD lock over the whole file (write
 * lock if exclusive, else read lock). False when a conflicting lock is held
 * (by any process, or another open file description in this one). The lock
 * goes away when the last fd of this open file description is closed. */
static napi_value ofd_lock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd;
  bool exclusive;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_bool(env, argv[1], "exclusive", &exclusive))
    return NULL;
  struct flock lock = {
      .l_type = exclusive ? F_WRLCK : F_RDLCK,
      .l_whence = SEEK_SET,
      .l_start = 0,
      .l_len = 0, /* to the end of the file, however it grows */
      .l_pid = 0, /* required for OFD locks */
  };
  if (fcntl(fd, F_OFD_SETLK, &lock) < 0) {
    if (errno == EAGAIN || errno == EACCES) {
      napi_value out;
      NAPI_CALL(env, napi_get_boolean(env, false, &out));
      return out;
    }
    throw_errno(env, errno, "fcntl");
    return NULL;
  }
  napi_value out;
  NAPI_CALL(env, napi_get_boolean(env, true, &out));
  return out;
}

static bool set_number(napi_env env, napi_value obj, const char *key, int64_t v) {
  napi_value n = make_number(env, v);
  return n != NULL && napi_set_named_property(env, obj, key, n) == napi_ok;
}

/* blockDeviceInfo(fd) -> { size, logicalBlockSize, physicalBlockSize }:
 * BLKGETSIZE64, BLKSSZGET, BLKPBSZGET. ENOTTY when fd is not a block device. */
static napi_value block_device_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
    throw_errno(env, errno, "ioctl BLKGETSIZE64");
    return NULL;
  }
  if (ioctl(fd, BLKSSZGET, &logical) < 0) {
    throw_errno(env, errno, "ioctl BLKSSZGET");
    return NULL;
  }
  if (ioctl(fd, BLKPBSZGET, &physical) < 0) {
    throw_errno(env, errno, "ioctl BLKPBSZGET");
    return NULL;
  }
  if (size > (uint64_t)MAX_SAFE_INTEGER) {
    throw_errno(env, EFBIG, "ioctl BLKGETSIZE64");
    return NULL;
  }
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  if (!set_number(env, out, "size", (int64_t)size) ||
      !set_number(env, out, "logicalBlockSize", logical) ||
      !set_number(env, out, "physicalBlockSize", physical)) {
    throw_napi_failure(env, "blockDeviceInfo");
    return NULL;
  }
  return out;
}

/* directIoAlignment(fd) -> { memory, offset } | null: statx STATX_DIOALIGN
 * (Linux 6.1). null when the kernel or the filesystem does not report it, or
 * reports that the file does not support direct I/O (both 0). */
static napi_value direct_io_alignment(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0) {
    if (errno == ENOSYS || errno == EINVAL)
      goto unknown;
    throw_errno(env, errno, "statx");
    return NULL;
  }
  if ((stx.stx_mask & STATX_DIOALIGN) == 0 || stx.stx_dio_offset_align == 0)
    goto unknown;
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  if (!set_number(env, out, "memory", stx.stx_dio_mem_align) ||
      !set_number(env, out, "offset", stx.stx_dio_offset_align)) {
    throw_napi_failure(env, "directIoAlignment");
    return NULL;
  }
  return out;
unknown:;
  napi_value null;
  NAPI_CALL(env, napi_get_null(env, &null));
  return null;
}

enum range_op { RANGE_FALLOCATE, RANGE_BLKDISCARD };

struct range_work {
  napi_async_work work;
  napi_ref pair; /* [context, callback]: a reference needs an object, the context may be any value */
  enum range_op op;
  int fd, mode;
  int64_t offset, length;
  int res;
};

static void range_execute(napi_env env, void *data) {
  (void)env;
  struct range_work *w = data;
  int ret;
  if (w->op == RANGE_FALLOCATE) {
    do
      ret = fallocate(w->fd, w->mode, (off_t)w->offset, (off_t)w->length);
    while (ret < 0 && errno == EINTR);
  } else {
    uint64_t range[2] = {(uint64_t)w->offset, (uint64_t)w->length};
    ret = ioctl(w->fd, BLKDISCARD, range);
  }
  w->res = ret < 0 ? -errno : 0;
}

static void range_free(napi_env env, struct range_work *w) {
  if (w->pair != NULL)
    napi_delete_reference(env, w->pair);
  if (w->work != NULL)
    napi_delete_async_work(env, w->work);
  free(w);
}

/* Runs on the JS thread inside a callback scope; a throw from the callback
 * becomes an uncaught exception, as for Node's own callbacks. */
static void range_complete(napi_env env, napi_status status, void *data) {
  struct range_work *w = data;
  napi_value pair, callback, global, args[2];
  int res = status == napi_ok ? w->res : -ECANCELED;
  if (napi_get_reference_value(env, w->pair, &pair) == napi_ok &&
      napi_get_element(env, pair, 0, &args[0]) == napi_ok &&
      napi_get_element(env, pair, 1, &callback) == napi_ok &&
      napi_get_global(env, &global) == napi_ok &&
      napi_create_int32(env, res, &args[1]) == napi_ok) {
    range_free(env, w);
    napi_call_function(env, global, callback, 2, args, NULL);
    return;
  }
  range_free(env, w);
}

/* Common start of fallocateAsync / blkDiscardAsync. */
static napi_value range_start(napi_env env, enum range_op op, int fd, int mode,
                              int64_t offset, int64_t length, napi_value context,
                              napi_value callback) {
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, callback, &t));
  if (t != napi_function) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"callback\" argument must be of type function");
    return NULL;
  }
  struct range_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, "calloc");
    return NULL;
  }
  *w = (struct range_work){.op = op, .fd = fd, .mode = mode, .offset = offset, .length = length};
  napi_value name, pair;
  if (napi_create_array_with_length(env, 2, &pair) != napi_ok ||
      napi_set_element(env, pair, 0, context) != napi_ok ||
      napi_set_element(env, pair, 1, callback) != napi_ok ||
      napi_create_reference(env, pair, 1, &w->pair) != napi_ok ||
      napi_create_string_utf8(env, op == RANGE_FALLOCATE ? "VhostFallocate" : "VhostBlkDiscard",
                              NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, range_execute, range_complete, w,
                             &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    range_free(env, w);
    throw_napi_failure(env, "napi_queue_async_work");
    return NULL;
  }
  return make_undefined(env);
}

/* fallocateAsync(fd, mode, offset, length, context, callback) */
static napi_value fallocate_async(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6] = {NULL};
  int fd;
  int64_t mode, offset, length;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    throw_type_error(env, "ERR_MISSING_ARGS", "fallocateAsync needs 6 arguments");
    return NULL;
  }
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int(env, argv[1], "mode", 0, INT32_MAX, &mode) ||
      !arg_int(env, argv[2], "offset", 0, MAX_SAFE_INTEGER, &offset) ||
      !arg_int(env, argv[3], "length", 1, MAX_SAFE_INTEGER, &length))
    return NULL;
  return range_start(env, RANGE_FALLOCATE, fd, (int)mode, offset, length, argv[4], argv[5]);
}

/* blkDiscardAsync(fd, offset, length, context, callback) */
static napi_value blk_discard_async(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {NULL};
  int fd;
  int64_t offset, length;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    throw_type_error(env, "ERR_MISSING_ARGS", "blkDiscardAsync needs 5 arguments");
    return NULL;
  }
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int(env, argv[1], "offset", 0, MAX_SAFE_INTEGER, &offset) ||
      !arg_int(env, argv[2], "length", 1, MAX_SAFE_INTEGER, &length))
    return NULL;
  return range_start(env, RANGE_BLKDISCARD, fd, 0, offset, length, argv[3], argv[4]);
}

/* Common part of preadv / pwritev: argv = fd, buffers, offsets, lengths,
 * count, skip, position, rwFlags. */
static napi_value rw_sync(napi_env env, napi_callback_info info, bool write) {
  size_t argc = 8;
  napi_value argv[8] = {NULL};
  int fd;
  int64_t skip, position, rw_flags;
  struct iovec iov[MAX_IOV_PER_OP];
  unsigned n = 0;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  switch (gather_iovecs(env, argv + 1, iov, MAX_IOV_PER_OP, &n, &skip)) {
  case GATHER_OK:
    break;
  case GATHER_FULL:
    throw_range_error(env, "more than %u iovecs in one operation", MAX_IOV_PER_OP);
    return NULL;
  case GATHER_THROWN:
    return NULL;
  }
  if (!arg_int(env, argv[6], "position", 0, MAX_SAFE_INTEGER - skip, &position) ||
      !arg_int_opt(env, argv[7], "rwFlags", 0, INT32_MAX, 0, &rw_flags))
    return NULL;
  ssize_t ret;
  do
    ret = write ? pwritev2(fd, iov, (int)n, (off_t)(position + skip), (int)rw_flags)
                : preadv2(fd, iov, (int)n, (off_t)(position + skip), (int)rw_flags);
  while (ret < 0 && errno == EINTR);
  return make_number(env, ret < 0 ? -errno : (int64_t)ret);
}

/* preadv(fd, buffers, offsets, lengths, count, skip, position, rwFlags = 0)
 * -> bytes read or -errno. Segments as gather_iovecs() takes them; the read
 * starts at position + skip. */
static napi_value preadv_sync(napi_env env, napi_callback_info info) {
  return rw_sync(env, info, false);
}

/* pwritev(fd, buffers, offsets, lengths, count, skip, position, rwFlags = 0)
 * -> bytes written or -errno. */
static napi_value pwritev_sync(napi_env env, napi_callback_info info) {
  return rw_sync(env, info, true);
}

/* fdatasync(fd) -> 0 or -errno */
static napi_value fdatasync_sync(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {NULL};
  int fd;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  int ret;
  do
    ret = fdatasync(fd);
  while (ret < 0 && errno == EINTR);
  return make_number(env, ret < 0 ? -errno : 0);
}

/* fallocate(fd, mode, offset, length) -> 0 or -errno */
static napi_value fallocate_sync(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {NULL};
  int fd;
  int64_t mode, offset, length;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int(env, argv[1], "mode", 0, INT32_MAX, &mode) ||
      !arg_int(env, argv[2], "offset", 0, MAX_SAFE_INTEGER, &offset) ||
      !arg_int(env, argv[3], "length", 1, MAX_SAFE_INTEGER, &length))
    return NULL;
  int ret;
  do
    ret = fallocate(fd, (int)mode, (off_t)offset, (off_t)length);
  while (ret < 0 && errno == EINTR);
  return make_number(env, ret < 0 ? -errno : 0);
}

bool register_fileops(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"ofdLock", NULL, ofd_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blockDeviceInfo", NULL, block_device_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"directIoAlignment", NULL, direct_io_alignment, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fallocateAsync", NULL, fallocate_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blkDiscardAsync", NULL, blk_discard_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadv", NULL, preadv_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pwritev", NULL, pwritev_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdatasync", NULL, fdatasync_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fallocate", NULL, fallocate_sync, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0],
                                props) == napi_ok;
}
