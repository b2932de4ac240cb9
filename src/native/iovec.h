/*
 * gather_iovecs(): a request's segments as an iovec array (see iovec.c).
 */
#ifndef VHOST_NATIVE_IOVEC_H
#define VHOST_NATIVE_IOVEC_H

#include "napi_util.h"

#include <sys/uio.h>

/* Most iovecs one operation may use (the kernel's UIO_MAXIOV). */
#define MAX_IOV_PER_OP 1024

enum gather_result {
  GATHER_OK,
  /* More than `room` iovecs are needed; nothing thrown. */
  GATHER_FULL,
  /* An argument was bad; a JS exception is pending. */
  GATHER_THROWN,
};

/*
 * args = buffers, offsets, lengths, count, skip. Segment i is bytes
 * [offsets[i], offsets[i] + lengths[i]) of buffers[i] (a Uint8Array) for
 * i < count; the first `skip` bytes of their concatenation are left out.
 * Fills iov[0, *n_out) (at most `room` entries) and *skip_out.
 */
enum gather_result gather_iovecs(napi_env env, const napi_value args[5],
                                 struct iovec *iov, unsigned room,
                                 unsigned *n_out, int64_t *skip_out);

#endif
