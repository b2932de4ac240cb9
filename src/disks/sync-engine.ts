/**
 * The sync I/O engine: each operation is the system call itself, made on the serving thread when
 * it is started (preadv2 / pwritev2 straight between the image and guest memory), and its result
 * is delivered on the next `submit()`.
 *
 * For images in memory (tmpfs, ramfs), where the copy is all the work an I/O is: tmpfs cannot
 * read or write without possibly blocking in the kernel's eyes (no FMODE_NOWAIT), so io_uring
 * hands every such request to a kernel worker thread and signals its completion later, which
 * costs a thread wakeup and a second turn of the event loop per batch; the thread pool costs as
 * much. Done inline, a 4 KiB read is a 4 KiB copy. Anywhere else the thread would wait for
 * storage, so this engine is the default only for images in memory.
 *
 * Owns the queue of results not yet delivered. Nothing is allocated per operation (discards on
 * block devices aside, which run BLKDISCARD on the thread pool, as the io_uring engine does).
 */
import * as native from '../native/index.js'
import type { IoContext, IoEngine, IoSink } from './io-engine.js'

/**
 * Completions delivered in one go before the rest wait for the next turn of the event loop: a
 * long write-zeroes done as writes must not keep the other queues and the control plane waiting.
 */
const DELIVER_BUDGET = 256

/** Inline engine. */
export class SyncEngine<C extends IoContext> implements IoEngine<C> {
  readonly name = 'sync'
  /** Finished operations not yet delivered: a ring of contexts and their results. */
  private readonly doneCtx: (C | null)[]
  private readonly doneRes: Float64Array
  private head = 0
  private count = 0
  private delivering = false
  private resumeScheduled = false
  private closed = false
  private readonly rangeDone: native.RangeCallback<C>
  private readonly resume = (): void => {
    this.resumeScheduled = false
    if (!this.closed) this.deliver()
  }

  /** @param maxInFlight - most operations in flight at once (each context has one at most) */
  constructor(private readonly sink: IoSink<C>, maxInFlight: number) {
    this.doneCtx = new Array<C | null>(maxInFlight).fill(null)
    this.doneRes = new Float64Array(maxInFlight)
    this.rangeDone = (ctx, res) => {
      this.push(ctx, res)
      this.deliver()
    }
  }

  readv(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number): boolean {
    this.push(ctx, native.preadv(fd, buffers, offsets, lengths, count, skip, position))
    return true
  }

  writev(ctx: C, fd: number, buffers: readonly Uint8Array[], offsets: Uint32Array, lengths: Uint32Array,
    count: number, skip: number, position: number, dsync: boolean): boolean {
    this.push(ctx, native.pwritev(fd, buffers, offsets, lengths, count, skip, position, dsync ? native.RWF_DSYNC : 0))
    return true
  }

  fdatasync(ctx: C, fd: number): boolean {
    this.push(ctx, native.fdatasync(fd))
    return true
  }

  fallocate(ctx: C, fd: number, mode: number, offset: number, length: number): boolean {
    this.push(ctx, native.fallocate(fd, mode, offset, length))
    return true
  }

  blkDiscard(ctx: C, fd: number, offset: number, length: number): boolean {
    native.blkDiscardAsync(fd, offset, length, ctx, this.rangeDone)
    return true
  }

  submit(): void {
    this.deliver()
  }

  close(): void {
    this.closed = true
  }

  private push(ctx: C, res: number): void {
    // INVARIANT: a context starts its next operation only once its last one was delivered, so
    // at most maxInFlight results wait here.
    if (this.count === this.doneCtx.length) throw new Error('sync engine: more operations in flight than contexts')
    const at = (this.head + this.count) % this.doneCtx.length
    this.doneCtx[at] = ctx
    this.doneRes[at] = res
    this.count++
  }

  /**
   * Delivers the finished operations, then lets the sink retry; repeats while that finished more,
   * up to the budget. Never nested: operations started from a completion queue up for this loop.
   */
  private deliver(): void {
    if (this.delivering) return
    this.delivering = true
    const { doneCtx, doneRes, sink } = this
    let delivered = 0
    try {
      while (this.count > 0) {
        if (delivered >= DELIVER_BUDGET) {
          if (!this.resumeScheduled) {
            this.resumeScheduled = true
            setImmediate(this.resume)
          }
          return
        }
        let n = this.count
        while (n-- > 0) {
          const ctx = doneCtx[this.head]!
          const res = doneRes[this.head]
          doneCtx[this.head] = null
          this.head = (this.head + 1) % doneCtx.length
          this.count--
          sink.complete(ctx, res)
          delivered++
        }
        sink.batchEnd()
      }
    } finally {
      this.delivering = false
    }
  }
}
