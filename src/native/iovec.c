/*
 * Gathers a request's segments into an iovec array: the (buffers, offsets,
 * lengths, count, skip) arguments that io_uring's prepReadv/prepWritev and
 * the synchronous preadv/pwritev share. Owns argument checking of those five
 * values; no syscalls, no state.
 */
#include "iovec.h"

/* A Uint32Array's elements. */
static bool arg_u32_array(napi_env env, napi_value v, const char *name,
                          uint32_t **data, size_t *len) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *base = NULL;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &type, len, &base, NULL, NULL) != napi_ok ||
      type != napi_uint32_array) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"%s\" argument must be an instance of Uint32Array", name);
    return false;
  }
  *data = base;
  return true;
}

enum gather_result gather_iovecs(napi_env env, const napi_value args[5],
                                 struct iovec *iov, unsigned room,
                                 unsigned *n_out, int64_t *skip_out) {
  bool is_array = false;
  uint32_t *offsets, *lengths, n_buffers = 0;
  size_t n_offsets, n_lengths;
  int64_t count, skip;
  if (napi_is_array(env, args[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, args[0], &n_buffers) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"buffers\" argument must be an Array of Uint8Array");
    return GATHER_THROWN;
  }
  if (!arg_u32_array(env, args[1], "offsets", &offsets, &n_offsets) ||
      !arg_u32_array(env, args[2], "lengths", &lengths, &n_lengths))
    return GATHER_THROWN;
  size_t max_count = n_buffers;
  if (n_offsets < max_count)
    max_count = n_offsets;
  if (n_lengths < max_count)
    max_count = n_lengths;
  if (!arg_int(env, args[3], "count", 1, (int64_t)max_count, &count) ||
      !arg_int(env, args[4], "skip", 0, MAX_SAFE_INTEGER, &skip))
    return GATHER_THROWN;

  unsigned n = 0;
  uint64_t left = (uint64_t)skip;
  for (uint32_t i = 0; i < (uint32_t)count; i++) {
    napi_value buf;
    bool is_typed = false;
    napi_typedarray_type type;
    size_t size = 0;
    void *base = NULL;
    if (napi_get_element(env, args[0], i, &buf) != napi_ok ||
        napi_is_typedarray(env, buf, &is_typed) != napi_ok || !is_typed ||
        napi_get_typedarray_info(env, buf, &type, &size, &base, NULL, NULL) !=
            napi_ok ||
        type != napi_uint8_array) {
      throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                       "buffers[%u] must be an instance of Uint8Array", i);
      return GATHER_THROWN;
    }
    uint64_t off = offsets[i], len = lengths[i];
    /* A detached buffer has size 0, so a stale view can never be reached. */
    if (off > size || len > size - off) {
      throw_range_error(env,
                        "segment %u [%llu, +%llu) lies outside its buffer of %zu bytes",
                        i, (unsigned long long)off, (unsigned long long)len, size);
      return GATHER_THROWN;
    }
    if (left >= len) {
      left -= len;
      continue;
    }
    off += left;
    len -= left;
    left = 0;
    if (n == room)
      return GATHER_FULL;
    iov[n].iov_base = (uint8_t *)base + off;
    iov[n].iov_len = len;
    n++;
  }
  if (n == 0) {
    throw_range_error(env, "skip %lld leaves no bytes to transfer", (long long)skip);
    return GATHER_THROWN;
  }
  *n_out = n;
  *skip_out = skip;
  return GATHER_OK;
}
