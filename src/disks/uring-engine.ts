/**
 * The io_uring I/O engine: operations become submission entries of one native ring, submitted
 * in batches with one io_uring_enter. Completions are reaped right after each submit (reads from
 * the page cache and most buffered writes finish inside io_uring_enter, so their requests end in
 * the same turn of the loop, without a second wakeup) and otherwise come back through the ring's
 * eventfd, watched by a Poller on the libuv loop.
 *
 * Owns the ring, its Poller and the completion buffer. Nothing is allocated per operation: the
 * io_uring user data is the context's index, the iovecs point into the caller's buffers (guest
 * memory) and live in the ring's arena until submit. Discards on block devices are the exception:
 * they run BLKDISCARD on the libuv thread pool (io_uring's block discard command needs Linux 6.12),
 * which costs one small native record per discard.
 */
import * as native from '../native/index.js'
import type { IoContext, IoEngine, IoSink } from './io-engine.js'

/** Submission queue entries: one batch of a few queues' worth of requests. */
const MAX_SQ_ENTRIES = 1024
/** io_uring's largest completion queue. */
const MAX_CQ_ENTRIES = 65536
/** iovecs prepared between two submits (256 KiB of arena); a fuller batch submits early. */
const IOVEC_ARENA = 16384
/** Completions copied per reap call. */
const REAP_BATCH = 256

function nextPowerOfTwo(n: number): number {
  let p = 1
  while (p < n) p *= 2
  return p
}

/** io_uring engine. */
export class UringEngine<C extends IoContext> implements IoEngine<C> {
  readonly name = 'io_uring'
  private readonly ring: native.IoUring
  private readonly poller: native.Poller
  private readonly cqes = new Int32Array(2 * REAP_BATCH)
  private readonly rangeDone: native.RangeCallback<C>
  /** Set while completions are being delivered: a submit made by one of them leaves the reaping to that loop. */
  private draining = false
  private closed = false

  /**
   * @param contexts - contexts by index (the user data of their operations)
   * @param sink - where completions go
   * @param maxInFlight - most operations in flight at once: the completion queue holds them all,
   *   so it never overflows
   * @throws NativeError from io_uring_setup where io_uring is unavailable (ENOSYS, EPERM...)
   */
  constructor(private readonly contexts: readonly C[], private readonly sink: IoSink<C>, maxInFlight: number) {
    const sq = Math.min(MAX_SQ_ENTRIES, nextPowerOfTwo(maxInFlight))
    const cq = Math.min(MAX_CQ_ENTRIES, Math.max(2 * sq, nextPowerOfTwo(maxInFlight)))
    this.ring = new native.IoUring(sq, cq, IOVEC_ARENA)
    try {
      this.poller = new native.Poller(this.ring.eventFd, () => this.onReadable())
      this.poller.unref()
      this.poller.start()
    } catch (err) {
      this.ring.close()
      throw err
    }
    this.rangeDone = (ctx, res) => {
      this.sink.complete(ctx, res)
      this.sink.batchEnd()
      this.submit()
    }
  }

  readv(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number): boolean {
    return this.ring.prepReadv(fd, buffers, offsets, lengths, count, skip, position, ctx.index)
  }

  writev(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, dsync: boolean): boolean {
    return this.ring.prepWritev(fd, buffers, offsets, lengths, count, skip, position, ctx.index, dsync ? native.RWF_DSYNC : 0)
  }

  fdatasync(ctx: C, fd: number): boolean {
    return this.ring.prepFsync(fd, true, ctx.index)
  }

  fallocate(ctx: C, fd: number, mode: number, offset: number, length: number): boolean {
    return this.ring.prepFallocate(fd, mode, offset, length, ctx.index)
  }

  blkDiscard(ctx: C, fd: number, offset: number, length: number): boolean {
    native.blkDiscardAsync(fd, offset, length, ctx, this.rangeDone)
    return true
  }

  submit(): void {
    // With nothing prepared this returns before any syscall.
    if (this.ring.submit() > 0) this.drain()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.poller.close()
    this.ring.close()
  }

  /** The eventfd fired: clear it, then deliver everything. */
  private onReadable(): void {
    if (this.closed) return
    native.eventfdRead(this.ring.eventFd)
    this.drain()
  }

  /**
   * Delivers every completion in the ring, lets the sink retry, submits what they prepared, and
   * repeats while that finished more. Never nested: a submit from inside a completion only
   * submits, and this loop reaps what it finished.
   */
  private drain(): void {
    if (this.draining) return
    this.draining = true
    const { ring, cqes, contexts, sink } = this
    try {
      for (;;) {
        let delivered = 0
        let n: number
        do {
          n = ring.reap(cqes)
          for (let i = 0; i < n; i++) sink.complete(contexts[cqes[2 * i]], cqes[2 * i + 1])
          delivered += n
        } while (n === REAP_BATCH)
        if (delivered === 0) return
        sink.batchEnd()
        // Start what the completions prepared (next steps, retries).
        ring.submit()
        // Each completion also signalled the eventfd: clear it so the loop does not wake for
        // nothing, then reap again, since one that arrived meanwhile may be what was just cleared.
        native.eventfdRead(ring.eventFd)
      }
    } finally {
      this.draining = false
    }
  }
}
