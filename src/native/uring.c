/*
 * IoUring: one io_uring instance as a JS class, driven by the raw syscalls
 * (io_uring_setup, io_uring_enter, io_uring_register; no liburing).
 *
 * Owns the ring's mappings, its completion eventfd and an iovec arena. Knows
 * nothing of requests, retries or errors: each prep*() fills one submission
 * queue entry (SQE) tagged with the caller's userData, submit() hands the
 * prepared entries to the kernel with one io_uring_enter, and reap() copies
 * completions (userData, res) into an Int32Array. res is what the syscall
 * would have returned, a negative errno on failure. Short transfers, retries
 * and error policy belong to the caller.
 *
 * Zero-copy: prepReadv/prepWritev build iovecs that point straight into the
 * caller's Uint8Arrays (views over mmap'd guest memory). The iovecs live in a
 * per-ring arena only until the kernel consumes their SQE: setup requires
 * IORING_FEAT_SUBMIT_STABLE (Linux 5.5), which promises that everything an
 * SQE points at for submission has been copied by the time io_uring_enter has
 * consumed it. So nothing is allocated per operation, and the arena restarts
 * from zero whenever the submission queue is empty. The data buffers
 * themselves must stay mapped until the operation's completion is reaped.
 *
 * Completions are signalled on an eventfd registered with the ring
 * (IORING_REGISTER_EVENTFD); the caller watches `eventFd` with a Poller,
 * reads the eventfd, then calls reap() until it returns less than fits.
 *
 * Memory ordering with the kernel (io_uring(7)): the SQ tail is published
 * with a release store after the SQEs are written; the CQ tail is read with
 * an acquire load before the CQEs, and the CQ head is released after them.
 *
 * Thread affinity: a ring belongs to the JS thread that created it.
 */
#include "iovec.h"
#include "napi_util.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* Kernel limits: IORING_MAX_ENTRIES, IORING_MAX_CQ_ENTRIES, UIO_MAXIOV. */
#define MAX_ENTRIES 32768
#define MAX_CQ_ENTRIES (2 * MAX_ENTRIES)
#define MAX_ARENA (1 << 20)
#define DEFAULT_ARENA 4096

struct uring {
  int ring_fd; /* -1 once closed */
  int event_fd;
  unsigned sq_entries, cq_entries;
  /* Submission queue. SQEs [*sq_ktail, sqe_tail) are prepared but not yet
   * published; [*sq_khead, *sq_ktail) are published, not yet consumed. */
  unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
  unsigned sq_mask;
  struct io_uring_sqe *sqes;
  unsigned sqe_tail;
  /* Completion queue. */
  unsigned *cq_khead, *cq_ktail;
  unsigned cq_mask;
  struct io_uring_cqe *cqes;
  /* Mappings (cq_ring == sq_ring with IORING_FEAT_SINGLE_MMAP). */
  void *sq_ring, *cq_ring;
  size_t sq_ring_len, cq_ring_len, sqes_len;
  /* iovecs of prepared SQEs the kernel has not consumed yet. */
  struct iovec *iov;
  unsigned iov_cap, iov_used;
};

static const napi_type_tag uring_tag = {0x51b0c6a2e48d3f97ULL,
                                        0x2d7e9f1a06c4b835ULL};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete,
                     unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags,
                      NULL, 0);
}

static int sys_register(int fd, unsigned op, const void *arg, unsigned nr) {
  return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

/* Release whatever ring_open set up; safe on a partly opened ring. */
static void ring_release(struct uring *r) {
  if (r->sqes != NULL && r->sqes != MAP_FAILED)
    munmap(r->sqes, r->sqes_len);
  if (r->cq_ring != NULL && r->cq_ring != MAP_FAILED && r->cq_ring != r->sq_ring)
    munmap(r->cq_ring, r->cq_ring_len);
  if (r->sq_ring != NULL && r->sq_ring != MAP_FAILED)
    munmap(r->sq_ring, r->sq_ring_len);
  if (r->ring_fd >= 0)
    close(r->ring_fd);
  if (r->event_fd >= 0)
    close(r->event_fd);
  free(r->iov);
  r->sqes = NULL;
  r->sq_ring = r->cq_ring = NULL;
  r->iov = NULL;
  r->ring_fd = r->event_fd = -1;
}

/* 0, or an errno with *failed naming the syscall; on failure nothing is left open. */
static int ring_open(struct uring *r, unsigned entries, unsigned cq_entries,
                     unsigned iov_cap, const char **failed) {
  struct io_uring_params p;
  /* SUBMIT_ALL (5.18) keeps submitting after an SQE fails to prepare; older
   * kernels refuse the flag with EINVAL, and stop at the failed SQE instead
   * (the rest stays queued for the next submit). */
  const unsigned attempts[] = {IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
                               IORING_SETUP_CQSIZE};
  int fd = -1;
  for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
    memset(&p, 0, sizeof p);
    p.flags = attempts[i];
    p.cq_entries = cq_entries;
    fd = sys_setup(entries, &p);
    if (fd >= 0 || errno != EINVAL)
      break;
  }
  if (fd < 0) {
    *failed = "io_uring_setup";
    return errno;
  }
  r->ring_fd = fd;
  /* SUBMIT_STABLE makes the iovec arena sound; NODROP means a full CQ never
   * loses a completion. Both date from Linux 5.5. */
  if ((p.features & IORING_FEAT_SUBMIT_STABLE) == 0 ||
      (p.features & IORING_FEAT_NODROP) == 0) {
    ring_release(r);
    *failed = "io_uring_setup";
    return EOPNOTSUPP;
  }
  r->sq_entries = p.sq_entries;
  r->cq_entries = p.cq_entries;
  r->sq_ring_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_ring_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) {
    if (r->cq_ring_len > r->sq_ring_len)
      r->sq_ring_len = r->cq_ring_len;
    r->cq_ring_len = r->sq_ring_len;
  }
  r->sq_ring = mmap(NULL, r->sq_ring_len, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (r->sq_ring == MAP_FAILED) {
    int err = errno;
    ring_release(r);
    *failed = "mmap";
    return err;
  }
  r->cq_ring = single ? r->sq_ring
                      : mmap(NULL, r->cq_ring_len, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  if (r->cq_ring != MAP_FAILED)
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (r->cq_ring == MAP_FAILED || r->sqes == MAP_FAILED) {
    int err = errno;
    ring_release(r);
    *failed = "mmap";
    return err;
  }
  char *sq = r->sq_ring, *cq = r->cq_ring;
  r->sq_khead = (unsigned *)(sq + p.sq_off.head);
  r->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
  r->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
  r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p.sq_off.array);
  r->cq_khead = (unsigned *)(cq + p.cq_off.head);
  r->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
  r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  /* The indirection array maps ring slots to SQE slots; identity forever. */
  for (unsigned i = 0; i < p.sq_entries; i++)
    r->sq_array[i] = i;
  r->sqe_tail = *r->sq_ktail;

  r->iov = calloc(iov_cap, sizeof *r->iov);
  if (r->iov == NULL) {
    ring_release(r);
    *failed = "calloc";
    return ENOMEM;
  }
  r->iov_cap = iov_cap;
  r->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->event_fd < 0) {
    int err = errno;
    ring_release(r);
    *failed = "eventfd";
    return err;
  }
  if (sys_register(fd, IORING_REGISTER_EVENTFD, &r->event_fd, 1) < 0) {
    int err = errno;
    ring_release(r);
    *failed = "io_uring_register";
    return err;
  }
  return 0;
}

static void uring_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct uring *r = data;
  ring_release(r);
  free(r);
}

/* new IoUring(entries, cqEntries = 2 * entries, iovecs = 4096) */
static napi_value uring_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {NULL, NULL, NULL}, self, target;
  int64_t entries, cq_entries, iov_cap;
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (target == NULL) {
    throw_type_error(env, "ERR_CONSTRUCT_CALL_REQUIRED",
                     "Class constructor IoUring cannot be invoked without 'new'");
    return NULL;
  }
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!arg_int(env, argv[0], "entries", 1, MAX_ENTRIES, &entries) ||
      !arg_int_opt(env, argv[1], "cqEntries", entries, MAX_CQ_ENTRIES,
                   2 * entries, &cq_entries) ||
      !arg_int_opt(env, argv[2], "iovecs", 1, MAX_ARENA, DEFAULT_ARENA, &iov_cap))
    return NULL;
  struct uring *r = calloc(1, sizeof *r);
  if (r == NULL) {
    throw_errno(env, ENOMEM, "calloc");
    return NULL;
  }
  r->ring_fd = r->event_fd = -1;
  const char *failed = NULL;
  int err = ring_open(r, (unsigned)entries, (unsigned)cq_entries,
                      (unsigned)iov_cap, &failed);
  if (err != 0) {
    free(r);
    throw_errno(env, err, failed);
    return NULL;
  }
  if (napi_type_tag_object(env, self, &uring_tag) != napi_ok ||
      napi_wrap(env, self, r, uring_finalize, NULL, NULL) != napi_ok) {
    ring_release(r);
    free(r);
    throw_napi_failure(env, "napi_wrap");
    return NULL;
  }
  return self;
}

/* The ring behind `this` with up to `n` arguments in argv; NULL (and a pending
 * exception) if `this` is not an IoUring or, when `open` is set, if it was closed. */
static struct uring *this_uring(napi_env env, napi_callback_info info,
                                size_t n, napi_value *argv, bool open) {
  napi_value self;
  napi_valuetype t;
  bool tagged = false;
  void *r = NULL;
  size_t argc = n;
  for (size_t i = 0; i < n; i++)
    argv[i] = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok ||
      napi_typeof(env, self, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, self, &uring_tag, &tagged) != napi_ok ||
      !tagged || napi_unwrap(env, self, &r) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_THIS", "Value of \"this\" must be an IoUring");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (argv[i] == NULL)
      napi_get_undefined(env, &argv[i]);
  if (open && ((struct uring *)r)->ring_fd < 0) {
    throw_errno(env, EBADF, "io_uring");
    return NULL;
  }
  return r;
}

/* The next free SQE, zeroed, or NULL when the submission queue is full. */
static struct io_uring_sqe *next_sqe(struct uring *r) {
  unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
  if (r->sqe_tail - head >= r->sq_entries)
    return NULL;
  /* Every SQE handed out earlier has been consumed: their iovecs are free. */
  if (head == r->sqe_tail)
    r->iov_used = 0;
  struct io_uring_sqe *sqe = &r->sqes[r->sqe_tail & r->sq_mask];
  memset(sqe, 0, sizeof *sqe);
  return sqe;
}

static napi_value make_bool(napi_env env, bool v) {
  napi_value out = NULL;
  napi_get_boolean(env, v, &out);
  return out;
}

/*
 * prepReadv / prepWritev(fd, buffers, offsets, lengths, count, skip, position,
 * userData, rwFlags = 0) -> boolean
 *
 * Segment i is bytes [offsets[i], offsets[i] + lengths[i]) of buffers[i];
 * the first `skip` bytes of the concatenation are left out (to continue a
 * short transfer), and the transfer starts at file offset position + skip. False, with nothing prepared, when the submission queue or
 * the iovec arena is full: submit() and try again.
 */
static napi_value prep_rw(napi_env env, napi_callback_info info, uint8_t opcode) {
  napi_value argv[9];
  struct uring *r = this_uring(env, info, 9, argv, true);
  if (r == NULL)
    return NULL;
  int fd;
  int64_t skip, position, user_data, rw_flags;
  if (!arg_fd(env, argv[0], "fd", &fd))
    return NULL;
  /* Taken first: it frees the arena once every earlier entry was consumed. The
   * entry is not queued before sqe_tail moves, so an early return leaves none. */
  struct io_uring_sqe *sqe = next_sqe(r);
  if (sqe == NULL)
    return make_bool(env, false);
  struct iovec *iov = r->iov + r->iov_used;
  unsigned room = r->iov_cap - r->iov_used;
  if (room > MAX_IOV_PER_OP)
    room = MAX_IOV_PER_OP;
  unsigned n = 0;
  switch (gather_iovecs(env, argv + 1, iov, room, &n, &skip)) {
  case GATHER_OK:
    break;
  case GATHER_FULL:
    if (room == MAX_IOV_PER_OP || r->iov_used == 0) {
      throw_range_error(env, "more than %u iovecs in one operation", room);
      return NULL;
    }
    return make_bool(env, false); /* arena full until the next submit */
  case GATHER_THROWN:
    return NULL;
  }
  if (!arg_int(env, argv[6], "position", 0, MAX_SAFE_INTEGER - skip, &position) ||
      !arg_int(env, argv[7], "userData", 0, INT32_MAX, &user_data) ||
      !arg_int_opt(env, argv[8], "rwFlags", 0, UINT32_MAX, 0, &rw_flags))
    return NULL;
  sqe->opcode = opcode;
  sqe->fd = fd;
  sqe->off = (uint64_t)position + (uint64_t)skip;
  sqe->addr = (uint64_t)(uintptr_t)iov;
  sqe->len = n;
  sqe->rw_flags = (uint32_t)rw_flags;
  sqe->user_data = (uint64_t)user_data;
  r->iov_used += n;
  r->sqe_tail++;
  return make_bool(env, true);
}

static napi_value uring_prep_readv(napi_env env, napi_callback_info info) {
  return prep_rw(env, info, IORING_OP_READV);
}

static napi_value uring_prep_writev(napi_env env, napi_callback_info info) {
  return prep_rw(env, info, IORING_OP_WRITEV);
}

/* prepFsync(fd, datasync, userData) -> boolean */
static napi_value uring_prep_fsync(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  struct uring *r = this_uring(env, info, 3, argv, true);
  if (r == NULL)
    return NULL;
  int fd;
  bool datasync;
  int64_t user_data;
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_bool(env, argv[1], "datasync", &datasync) ||
      !arg_int(env, argv[2], "userData", 0, INT32_MAX, &user_data))
    return NULL;
  struct io_uring_sqe *sqe = next_sqe(r);
  if (sqe == NULL)
    return make_bool(env, false);
  sqe->opcode = IORING_OP_FSYNC;
  sqe->fd = fd;
  sqe->fsync_flags = datasync ? IORING_FSYNC_DATASYNC : 0;
  sqe->user_data = (uint64_t)user_data;
  r->sqe_tail++;
  return make_bool(env, true);
}

/* prepFallocate(fd, mode, offset, length, userData) -> boolean */
static napi_value uring_prep_fallocate(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  struct uring *r = this_uring(env, info, 5, argv, true);
  if (r == NULL)
    return NULL;
  int fd;
  int64_t mode, offset, length, user_data;
  if (!arg_fd(env, argv[0], "fd", &fd) ||
      !arg_int(env, argv[1], "mode", 0, INT32_MAX, &mode) ||
      !arg_int(env, argv[2], "offset", 0, MAX_SAFE_INTEGER, &offset) ||
      !arg_int(env, argv[3], "length", 1, MAX_SAFE_INTEGER, &length) ||
      !arg_int(env, argv[4], "userData", 0, INT32_MAX, &user_data))
    return NULL;
  struct io_uring_sqe *sqe = next_sqe(r);
  if (sqe == NULL)
    return make_bool(env, false);
  /* io_uring's fallocate layout: offset in off, length in addr, mode in len. */
  sqe->opcode = IORING_OP_FALLOCATE;
  sqe->fd = fd;
  sqe->off = (uint64_t)offset;
  sqe->addr = (uint64_t)length;
  sqe->len = (uint32_t)mode;
  sqe->user_data = (uint64_t)user_data;
  r->sqe_tail++;
  return make_bool(env, true);
}

/* submit() -> number of SQEs the kernel consumed (0 when it is busy: retry). */
static napi_value uring_submit(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, true);
  if (r == NULL)
    return NULL;
  __atomic_store_n(r->sq_ktail, r->sqe_tail, __ATOMIC_RELEASE);
  unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
  unsigned to_submit = r->sqe_tail - head;
  if (to_submit == 0)
    return make_number(env, 0);
  int ret;
  do
    ret = sys_enter(r->ring_fd, to_submit, 0, 0);
  while (ret < 0 && errno == EINTR);
  if (ret < 0) {
    /* EAGAIN: no memory for requests right now; EBUSY: completions are
     * backed up. Both pass: the SQEs stay queued for the next submit. */
    if (errno == EAGAIN || errno == EBUSY)
      return make_number(env, 0);
    throw_errno(env, errno, "io_uring_enter");
    return NULL;
  }
  if (__atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE) == r->sqe_tail)
    r->iov_used = 0;
  return make_number(env, ret);
}

/* reap(out: Int32Array) -> n: completions copied as out[2i] = userData,
 * out[2i + 1] = res, for i < n; n < out.length / 2 means the queue is empty. */
static napi_value uring_reap(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 1, argv, true);
  if (r == NULL)
    return NULL;
  bool is_typed = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *base = NULL;
  if (napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[0], &type, &len, &base, NULL, NULL) !=
          napi_ok ||
      type != napi_int32_array || len < 2) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                     "The \"out\" argument must be an Int32Array of at least 2 elements");
    return NULL;
  }
  int32_t *out = base;
  size_t cap = len / 2, n = 0;
  unsigned head = __atomic_load_n(r->cq_khead, __ATOMIC_RELAXED);
  unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
  while (head != tail && n < cap) {
    const struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
    out[2 * n] = (int32_t)cqe->user_data;
    out[2 * n + 1] = cqe->res;
    head++;
    n++;
  }
  __atomic_store_n(r->cq_khead, head, __ATOMIC_RELEASE);
  /* Completions that did not fit the CQ wait in the kernel's overflow list:
   * once the CQ is drained, ask the kernel to move them over (this signals
   * the eventfd again, so the caller's next reap picks them up). */
  if (n < cap && (__atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED) &
                  IORING_SQ_CQ_OVERFLOW) != 0) {
    int ret;
    do
      ret = sys_enter(r->ring_fd, 0, 0, IORING_ENTER_GETEVENTS);
    while (ret < 0 && errno == EINTR);
  }
  return make_number(env, (int64_t)n);
}

/* close(): unmap the rings, close the ring and the eventfd. Idempotent.
 * Close the Poller watching eventFd first. */
static napi_value uring_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, false);
  if (r == NULL)
    return NULL;
  ring_release(r);
  return make_undefined(env);
}

static napi_value uring_event_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, false);
  return r == NULL ? NULL : make_number(env, r->event_fd);
}

static napi_value uring_entries(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, false);
  return r == NULL ? NULL : make_number(env, r->sq_entries);
}

static napi_value uring_cq_entries(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, false);
  return r == NULL ? NULL : make_number(env, r->cq_entries);
}

/* SQEs prepared or submitted that the kernel has not consumed yet. */
static napi_value uring_pending(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct uring *r = this_uring(env, info, 0, argv, false);
  if (r == NULL)
    return NULL;
  if (r->ring_fd < 0)
    return make_number(env, 0);
  return make_number(env, r->sqe_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE));
}

bool register_uring(napi_env env, napi_value exports) {
  const napi_property_descriptor members[] = {
      {"prepReadv", NULL, uring_prep_readv, NULL, NULL, NULL, napi_default_method, NULL},
      {"prepWritev", NULL, uring_prep_writev, NULL, NULL, NULL, napi_default_method, NULL},
      {"prepFsync", NULL, uring_prep_fsync, NULL, NULL, NULL, napi_default_method, NULL},
      {"prepFallocate", NULL, uring_prep_fallocate, NULL, NULL, NULL, napi_default_method, NULL},
      {"submit", NULL, uring_submit, NULL, NULL, NULL, napi_default_method, NULL},
      {"reap", NULL, uring_reap, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, uring_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"eventFd", NULL, NULL, uring_event_fd, NULL, NULL, napi_default, NULL},
      {"entries", NULL, NULL, uring_entries, NULL, NULL, napi_default, NULL},
      {"cqEntries", NULL, NULL, uring_cq_entries, NULL, NULL, napi_default, NULL},
      {"pending", NULL, NULL, uring_pending, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  return napi_define_class(env, "IoUring", NAPI_AUTO_LENGTH, uring_new, NULL,
                           sizeof members / sizeof members[0], members,
                           &cls) == napi_ok &&
         napi_set_named_property(env, exports, "IoUring", cls) == napi_ok;
}
