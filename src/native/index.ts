/**
 * The typed face of the C addon (src/native/*.c): Unix sockets, fd passing,
 * shared memory, eventfds and an fd poller on the libuv loop. Mechanism only:
 * no protocol knowledge and no policy (which paths to unlink, which offsets a
 * file can back, when to retry) — callers own those.
 *
 * Memory-ordering decision (made here, once, for the whole project):
 * guest memory is an *external*, non-shared ArrayBuffer over the mmap()'d pages,
 * and unmap() detaches that buffer before it calls munmap, so every JS view
 * over it becomes length 0 and can never touch unmapped memory. Ring indices
 * (avail.idx, used.idx, used-ring elements that must be published before the
 * index) are read and written with `Atomics.load` / `Atomics.store` on
 * Uint16Array / Uint32Array views over that buffer. Atomics are allowed on
 * non-shared buffers; V8 compiles them to real sequentially consistent
 * accesses (acquire/release or stronger) and never hoists them out of loops,
 * which gives the ordering virtio 1.2 §2.7.13 requires on both x86-64 (where
 * compiler ordering suffices) and arm64 (where it emits the barriers).
 * Plain typed-array or DataView accesses carry no such promise: use them only
 * for data the index publication orders (descriptors, buffers).
 * test/native/memory.test.ts checks that Atomics work on these views and that
 * a store through one mapping of a memfd is seen through another.
 *
 * Errors: every system failure throws a {@link NativeError} (`code` 'EBADF',
 * `errno` negative as in Node's own system errors, `syscall` 'close');
 * argument type errors are TypeErrors with code 'ERR_INVALID_ARG_TYPE', and
 * out-of-range values RangeErrors with code 'ERR_OUT_OF_RANGE'.
 */
import { addon } from './addon.js'

/** Error thrown by every native call: Node-style errno error. */
export interface NativeError extends Error {
  /** The errno name, e.g. 'EBADF', 'EAGAIN', 'EMSGSIZE'. */
  code: string
  /** The negated errno value (-9 for EBADF), as in Node's own system errors. */
  errno: number
  /** The failing call, e.g. 'close', 'recvmsg', 'uv_poll_start'. */
  syscall: string
}

/** One recvMsg() result. */
export interface RecvResult {
  /** Bytes received; 0 means the peer closed the connection (EOF). */
  bytes: number
  /** Received descriptors (close-on-exec), owned by the caller from now on. */
  fds: number[]
}

/**
 * Create a listening Unix stream socket at `path` (non-blocking, close-on-exec).
 * The socket file gets `mode` (e.g. 0o600) before listen(), so no client can
 * connect under a looser mode. Does not unlink an existing file: EADDRINUSE is
 * thrown and the caller decides. A path of 108 bytes or more is ENAMETOOLONG.
 * @param backlog listen() backlog, default 511.
 * @returns the listening fd.
 */
export function unixListen(path: string, mode: number, backlog?: number): number {
  return addon.unixListen(path, mode, backlog)
}

/**
 * Connect to the Unix stream socket at `path`; returns a non-blocking fd.
 * Never blocks: a full listen backlog throws EAGAIN (retry later).
 * ECONNREFUSED (nobody listening) and ENOENT (no socket file) are thrown.
 */
export function unixConnect(path: string): number {
  return addon.unixConnect(path)
}

/**
 * Accept one pending connection (accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC).
 * @returns the connection fd, or -1 when no connection is pending (EAGAIN).
 */
export function unixAccept(listenFd: number): number {
  return addon.unixAccept(listenFd)
}

/** A connected AF_UNIX SOCK_STREAM pair, both ends non-blocking and close-on-exec. */
export function socketPair(): [number, number] {
  return addon.socketPair()
}

/** Set O_NONBLOCK on `fd` (e.g. an inherited `--fd` listening socket). */
export function setNonBlocking(fd: number): void {
  addon.setNonBlocking(fd)
}

/**
 * recvmsg into `buf[offset, offset + length)` with room for 8 fds (SCM_RIGHTS,
 * received close-on-exec). Never blocks, even on a blocking fd.
 * `length` must be at least 1 (a zero-length read would look like EOF).
 * Throws EMSGSIZE (syscall 'recvmsg') if more fds arrived than fit or any
 * control message other than SCM_RIGHTS arrived; every fd that did arrive is
 * closed first, and the bytes of that message are lost.
 * @returns null when nothing is pending (EAGAIN); `bytes` 0 at EOF.
 */
export function recvMsg(fd: number, buf: Uint8Array, offset: number, length: number): RecvResult | null {
  return addon.recvMsg(fd, buf, offset, length)
}

/**
 * sendmsg of `buf[offset, offset + length)` (length >= 1) with up to 8 fds as
 * SCM_RIGHTS, MSG_NOSIGNAL (a closed peer is EPIPE, not SIGPIPE). Never blocks.
 * A partial send carries the fds with its first byte.
 * More than 8 fds throws a RangeError ('ERR_OUT_OF_RANGE').
 * @returns bytes sent, or -1 when the socket buffer is full (EAGAIN).
 */
export function sendMsg(fd: number, buf: Uint8Array, offset: number, length: number, fds?: readonly number[]): number {
  return addon.sendMsg(fd, buf, offset, length, fds)
}

/**
 * Map `length` bytes of `fd` at `offset` (MAP_SHARED; read-only unless
 * `writable`) as an external ArrayBuffer. `length` is 1..2^32 (Node 20's typed
 * arrays stop at 4 GiB: map large regions in windows); `offset` must be a
 * multiple of the page size. The caller must keep `offset + length` within the
 * file (see {@link fdSize}): touching a page past its end raises SIGBUS.
 * Release with {@link unmap}; a buffer collected while still mapped is
 * unmapped by its finalizer.
 */
export function mmap(fd: number, length: number, offset: number, writable: boolean): ArrayBuffer {
  return addon.mmap(fd, length, offset, writable)
}

/**
 * Detach `buf`, then munmap it. Afterwards typed-array views over it have
 * length 0 (indexed reads give undefined, writes are ignored), while Atomics
 * and DataView accesses through old views throw a TypeError. Idempotent. A buffer not returned by
 * {@link mmap} throws a TypeError ('ERR_INVALID_ARG_TYPE').
 */
export function unmap(buf: ArrayBuffer): void {
  addon.unmap(buf)
}

/** memfd_create(name, MFD_CLOEXEC) sized to `size` bytes with ftruncate. */
export function memfdCreate(name: string, size: number): number {
  return addon.memfdCreate(name, size)
}

/** fstat(fd).st_size: the bound a mapping of a regular file or memfd must stay within. */
export function fdSize(fd: number): number {
  return addon.fdSize(fd)
}

/** A non-blocking, close-on-exec eventfd with counter `initial` (default 0). */
export function eventfdCreate(initial?: number): number {
  return addon.eventfdCreate(initial)
}

/**
 * Read and reset the eventfd counter.
 * @returns the counter, or 0 when nothing is pending (EAGAIN).
 */
export function eventfdRead(fd: number): number {
  return addon.eventfdRead(fd)
}

/**
 * Add `value` (default 1) to the eventfd counter. A saturated counter (EAGAIN)
 * is not an error: the reader is already due to wake.
 */
export function eventfdWrite(fd: number, value?: number): void {
  addon.eventfdWrite(fd, value)
}

/** close(2). EBADF (bad or already closed fd) is thrown; EINTR counts as closed. */
export function close(fd: number): void {
  addon.close(fd)
}

/**
 * Watches one fd for readability on the libuv loop (uv_poll_t, level-triggered)
 * and calls `onReadable` with the Poller as `this`, inside an async context:
 * microtasks and nextTicks queued by the callback run right after it, and a
 * throw is reported as an uncaught exception, as for Node's own callbacks.
 * A poll error (e.g. a socket error) still calls `onReadable` (the next syscall
 * reports the error) and leaves the poller stopped; start() re-arms it.
 *
 * Only one open Poller per fd: a second one throws EEXIST ('uv_poll_init').
 * close() the Poller before closing its fd. A started poller keeps itself
 * alive (like Node's handles); an idle one that is garbage-collected, or one
 * still open at process or worker exit, is closed for you.
 */
export interface Poller {
  /** Begin watching (idempotent). A closed or unpollable fd throws (e.g. EBADF, syscall 'epoll_ctl'). No-op after close(). */
  start(): void
  /** Stop watching (idempotent): the callback is not called after stop() returns. */
  stop(): void
  /** Stop and release the uv handle. Every later call on this Poller is a no-op. */
  close(): void
  /** Let an active poller keep the event loop alive (the default). */
  ref(): void
  /** Let the event loop exit even while this poller is active. */
  unref(): void
}

/** Constructor of {@link Poller}. */
export interface PollerConstructor {
  /** Creates an idle poller: call start() to begin watching. */
  new (fd: number, onReadable: () => void): Poller
  readonly prototype: Poller
}

/** The Poller class (implemented in C, src/native/poller.c). */
export const Poller: PollerConstructor = addon.Poller

/**
 * One io_uring instance (src/native/uring.c), driven by raw syscalls. Mechanism only: each
 * `prep*()` fills one submission entry tagged with `userData` (an integer 0..2^31-1), `submit()`
 * hands every prepared entry to the kernel with one io_uring_enter, and `reap()` copies
 * completions out as (userData, res) pairs, where `res` is what the syscall would have returned
 * (a byte count, 0, or a negative errno such as -28 for ENOSPC). Short transfers, retries and
 * error policy are the caller's.
 *
 * Zero-copy: `prepReadv`/`prepWritev` point the kernel straight at the given Uint8Arrays; those
 * bytes must stay mapped until the completion is reaped. Their iovecs live in the ring's arena
 * only until `submit()`, so nothing is allocated per operation.
 *
 * Completions are signalled on `eventFd` (registered with IORING_REGISTER_EVENTFD): watch it
 * with a {@link Poller}, drain it with {@link eventfdRead}, then call `reap()` until it returns
 * fewer pairs than fit. Construction throws a {@link NativeError} where io_uring is unavailable:
 * ENOSYS (old kernel), EPERM (seccomp, or `kernel.io_uring_disabled`), EOPNOTSUPP (a kernel older
 * than 5.5, without IORING_FEAT_SUBMIT_STABLE / NODROP).
 */
export interface IoUring {
  /** The eventfd the kernel signals for every completion (non-blocking, close-on-exec). */
  readonly eventFd: number
  /** Submission queue size (the kernel rounds `entries` up to a power of two). */
  readonly entries: number
  /** Completion queue size. */
  readonly cqEntries: number
  /** Entries prepared or submitted that the kernel has not consumed yet. */
  readonly pending: number
  /**
   * Prepare a readv into segments `i < count`: bytes `[offsets[i], offsets[i] + lengths[i])` of
   * `buffers[i]`, whose concatenation maps to the file from `position` on. The first `skip` bytes
   * are left out (to continue a short read): the transfer starts at `position + skip` with the
   * segment byte `skip` falls on. A segment outside its buffer, more than
   * 1024 iovecs, or nothing left after `skip` throws a RangeError.
   * @returns false, with nothing prepared, when the submission queue or the iovec arena is
   *   full: `submit()` and try again.
   */
  prepReadv(fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, userData: number): boolean
  /** As {@link prepReadv}, writing; `rwFlags` are pwritev2's RWF_* bits (e.g. RWF_DSYNC = 2). */
  prepWritev(fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, userData: number, rwFlags?: number): boolean
  /** Prepare an fsync (fdatasync when `datasync`). False when the submission queue is full. */
  prepFsync(fd: number, datasync: boolean, userData: number): boolean
  /** Prepare fallocate(fd, mode, offset, length) (`length` ≥ 1). False when the submission queue is full. */
  prepFallocate(fd: number, mode: number, offset: number, length: number, userData: number): boolean
  /**
   * One io_uring_enter for everything prepared. Returns how many entries the kernel consumed: 0
   * when nothing was pending, or when the kernel is short of resources right now (EAGAIN, EBUSY;
   * the entries stay queued for the next submit). Other failures throw.
   */
  submit(): number
  /**
   * Copy up to `out.length / 2` completions: `out[2i]` = userData, `out[2i+1]` = res.
   * @returns how many were copied; fewer than fit means the completion queue is empty.
   */
  reap(out: Int32Array): number
  /**
   * Unmap the rings and close the ring and the eventfd (idempotent). Close the Poller on
   * `eventFd` first, and only close with nothing in flight. Every later call but `close()`
   * throws EBADF; a ring that is garbage-collected is closed for you.
   */
  close(): void
}

/** Constructor of {@link IoUring}. */
export interface IoUringConstructor {
  /**
   * @param entries - submission queue size, 1..32768
   * @param cqEntries - completion queue size, entries..65536 (default 2 × entries); keep it at
   *   least the number of operations in flight at once
   * @param iovecs - iovec arena size, 1..2^20 (default 4096): the iovecs of the entries prepared
   *   between two submits; one operation may use up to 1024
   */
  new (entries: number, cqEntries?: number, iovecs?: number): IoUring
  readonly prototype: IoUring
}

/** The IoUring class (implemented in C, src/native/uring.c). */
export const IoUring: IoUringConstructor = addon.IoUring

/** io_uring / pwritev2 flag: the write is durable when it completes (like O_DSYNC for one write). */
export const RWF_DSYNC = 2

/** fallocate(2) mode bit: do not change the file size. */
export const FALLOC_FL_KEEP_SIZE = 0x01
/** fallocate(2) mode bit: deallocate the range (needs KEEP_SIZE); it reads back as zeroes. */
export const FALLOC_FL_PUNCH_HOLE = 0x02
/** fallocate(2) mode: make the range read as zeroes, keeping it allocated. */
export const FALLOC_FL_ZERO_RANGE = 0x10

/**
 * Take an OFD lock (fcntl F_OFD_SETLK) over the whole file: a write lock when `exclusive`, else a
 * read lock. Any number of read locks coexist; a write lock excludes every other lock, from any
 * process and from other open file descriptions of this one. The lock lasts until the fd (and
 * its duplicates) is closed.
 * @returns false when a conflicting lock is held.
 */
export function ofdLock(fd: number, exclusive: boolean): boolean {
  return addon.ofdLock(fd, exclusive)
}

/** Geometry of a block device. */
export interface BlockDeviceInfo {
  /** Bytes (BLKGETSIZE64). */
  size: number
  /** Logical sector size in bytes (BLKSSZGET). */
  logicalBlockSize: number
  /** Physical sector size in bytes (BLKPBSZGET). */
  physicalBlockSize: number
}

/** Size and sector sizes of the block device open on `fd`; ENOTTY when it is not one. */
export function blockDeviceInfo(fd: number): BlockDeviceInfo {
  return addon.blockDeviceInfo(fd)
}

/** Direct-I/O alignment of a file, in bytes. */
export interface DirectIoAlignment {
  /** Alignment of each buffer's address (stx_dio_mem_align). */
  memory: number
  /** Alignment of file offsets and transfer lengths (stx_dio_offset_align). */
  offset: number
}

/**
 * statx STATX_DIOALIGN (Linux 6.1) of `fd`; null when the kernel or filesystem does not report
 * it or the file does not support O_DIRECT.
 */
export function directIoAlignment(fd: number): DirectIoAlignment | null {
  return addon.directIoAlignment(fd)
}

/** Completion of {@link fallocateAsync} / {@link blkDiscardAsync}: `res` is 0 or a negative errno. */
export type RangeCallback<C> = (context: C, res: number) => void

/**
 * fallocate(fd, mode, offset, length) on the libuv thread pool; then `callback(context, res)`
 * on this thread. One small native allocation per call.
 */
export function fallocateAsync<C>(fd: number, mode: number, offset: number, length: number, context: C,
  callback: RangeCallback<C>): void {
  addon.fallocateAsync(fd, mode, offset, length, context, callback)
}

/**
 * ioctl(fd, BLKDISCARD, [offset, length]) on the libuv thread pool; then
 * `callback(context, res)` on this thread. `fd` must be a block device open for writing.
 */
export function blkDiscardAsync<C>(fd: number, offset: number, length: number, context: C,
  callback: RangeCallback<C>): void {
  addon.blkDiscardAsync(fd, offset, length, context, callback)
}

/**
 * preadv2 on this thread, straight into the segments (bytes `[offsets[i], offsets[i] +
 * lengths[i])` of `buffers[i]` for `i < count`, the first `skip` bytes left out), from file
 * offset `position + skip`. Blocks the thread for as long as the read takes: for images in
 * memory (tmpfs), where it is a copy.
 * @returns bytes read (0 at end of file) or a negative errno
 */
export function preadv(fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
  count: number, skip: number, position: number): number {
  return addon.preadv(fd, buffers, offsets, lengths, count, skip, position)
}

/** pwritev2 on this thread, as {@link preadv}; `rwFlags` e.g. {@link RWF_DSYNC}. @returns bytes written or a negative errno */
export function pwritev(fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
  count: number, skip: number, position: number, rwFlags = 0): number {
  return addon.pwritev(fd, buffers, offsets, lengths, count, skip, position, rwFlags)
}

/** fdatasync on this thread. @returns 0 or a negative errno */
export function fdatasync(fd: number): number {
  return addon.fdatasync(fd)
}

/** fallocate(fd, mode, offset, length) on this thread. @returns 0 or a negative errno */
export function fallocate(fd: number, mode: number, offset: number, length: number): number {
  return addon.fallocate(fd, mode, offset, length)
}
