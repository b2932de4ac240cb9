/*
 * Shared memory: mmap of an fd as an external ArrayBuffer, unmap (detach, then
 * munmap), memfd_create and fstat size. Owns the lifetime of each mapping; does
 * not decide what may be mapped (bounds against the file size are the caller's
 * policy: fdSize() gives it what it needs).
 *
 * Each mapping has a heap record {addr, len, mapped}. It is the finalize hint
 * of the ArrayBuffer, so it lives until Node releases the buffer's backing
 * store, which happens only after the buffer was detached or collected. The
 * buffer also carries the record via napi_wrap (to find it in unmap()) and a
 * type tag (to recognise our buffers). unmap() checks "detached" before it
 * touches the record, so it never reads a record the finalizer has freed.
 */
#include "napi_util.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Node 20's typed arrays and DataViews stop at 4 GiB; callers map in windows. */
#define MAX_MAPPING (INT64_C(1) << 32)

struct mapping {
  void *addr;
  size_t len;
  bool mapped;
};

static const napi_type_tag mapping_tag = {0x7668f57d1ee94a2bULL,
                                          0x9a1c3b5e6d0f8471ULL};

static void mapping_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  struct mapping *m = hint;
  if (m->mapped)
    munmap(m->addr, m->len);
  free(m);
}

/* mmap(fd, length, offset, writable) -> ArrayBuffer */
static napi_value mmap_fd(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int fd;
  int64_t len, off;
  bool writable;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int(env, argv[1], "length", 1, MAX_MAPPING, &len) ||
      !arg_int(env, argv[2], "offset", 0, MAX_SAFE_INTEGER, &off) ||
      !arg_bool(env, argv[3], "writable", &writable))
    return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (off % page != 0) {
    throw_range_error(env,
                      "The value of \"offset\" is out of range. It must be a "
                      "multiple of the page size %ld. Received %lld",
                      page, (long long)off);
    return NULL;
  }

  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void *addr = mmap(NULL, (size_t)len, prot, MAP_SHARED, fd, (off_t)off);
  if (addr == MAP_FAILED) {
    throw_errno(env, errno, "mmap");
    return NULL;
  }
  struct mapping *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)len);
    throw_errno(env, ENOMEM, "malloc");
    return NULL;
  }
  *m = (struct mapping){.addr = addr, .len = (size_t)len, .mapped = true};
  napi_value ab;
  if (napi_create_external_arraybuffer(env, addr, (size_t)len,
                                       mapping_finalize, m, &ab) != napi_ok) {
    munmap(addr, (size_t)len);
    free(m);
    throw_napi_failure(env, "napi_create_external_arraybuffer");
    return NULL;
  }
  /* From here on the finalizer owns m and the mapping: on failure, just throw
   * and let the buffer be collected. */
  NAPI_CALL(env, napi_type_tag_object(env, ab, &mapping_tag));
  NAPI_CALL(env, napi_wrap(env, ab, m, NULL, NULL, NULL));
  return ab;
}

/* unmap(buf): detach so every view reads as empty, then munmap. Idempotent. */
static napi_value unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is_ab = false, ours = false, detached = false;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab ||
      napi_check_object_type_tag(env, argv[0], &mapping_tag, &ours) !=
          napi_ok ||
      !ours) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"buf\" argument must be an ArrayBuffer returned by "
                     "mmap()");
    return NULL;
  }
  NAPI_CALL(env, napi_is_detached_arraybuffer(env, argv[0], &detached));
  /* INVARIANT: once detached, the record may already be freed by the
   * finalizer; it must not be touched. */
  if (detached)
    return make_undefined(env);
  struct mapping *m;
  NAPI_CALL(env, napi_unwrap(env, argv[0], (void **)&m));
  /* Detach first: after this no JS view can reach the pages. */
  NAPI_CALL(env, napi_detach_arraybuffer(env, argv[0]));
  if (m->mapped) {
    if (munmap(m->addr, m->len) < 0) {
      throw_errno(env, errno, "munmap");
      return NULL;
    }
    m->mapped = false;
  }
  return make_undefined(env);
}

/* memfdCreate(name, size) -> fd */
static napi_value memfd_create_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  /* The kernel caps memfd names at 249 bytes. */
  char name[250];
  size_t name_len;
  int64_t size;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_path(env, argv[0], "name", name, sizeof name, &name_len,
                "memfd_create") ||
      !arg_int(env, argv[1], "size", 0, MAX_SAFE_INTEGER, &size))
    return NULL;
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "memfd_create");
    return NULL;
  }
  if (ftruncate(fd, (off_t)size) < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "ftruncate");
    return NULL;
  }
  return make_number(env, fd);
}

/* fdSize(fd) -> st_size */
static napi_value fd_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  struct stat st;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  if (fstat(fd, &st) < 0) {
    throw_errno(env, errno, "fstat");
    return NULL;
  }
  return make_number(env, (int64_t)st.st_size);
}

bool register_memory(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"mmap", NULL, mmap_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmap", NULL, unmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfdCreate", NULL, memfd_create_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdSize", NULL, fd_size, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0],
                                props) == napi_ok;
}
