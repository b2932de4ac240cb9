/**
 * The driver interface of the mq layer, like the kernel's `struct blk_mq_ops` and the Rust
 * `kernel::block::mq::Operations` trait.
 *
 * Owns the contract only. A driver (in `src/disks`) implements it; `HwQueue` calls it. The
 * driver sees requests and byte segments, never virtqueues.
 */
import type { HwQueue } from './hw-queue.js'
import type { Request } from './request.js'
import type { BlkStatus } from './status.js'

/**
 * What a block driver implements. Every method is called on the JS thread that owns the tag set.
 *
 * Re-entrancy: mq never calls `queueRq`, `commitRqs`, `complete` or `timeout` from inside another
 * of these calls on the same hardware queue; work that becomes possible meanwhile (a requeued
 * request, a restart) waits until the outer call has returned. It may call `queueRq` from inside
 * `rq.end()` when the driver ends a request from its own asynchronous callback (as blk-mq reruns
 * a queue from the completion path).
 */
export interface Operations {
  /**
   * Take a request (like `queue_rq`). The request is started: its fields are final and its
   * deadline runs. Return
   * - `BlkStatus.OK`: accepted. The driver now owns it and must end it exactly once, with
   *   `rq.end()`/`rq.endOk()` (it may do so before returning) or `rq.complete()`.
   * - `BlkStatus.RESOURCE`: busy, not taken. mq keeps it on the queue's requeue list, in order,
   *   and offers it again before new work (on the next dispatch or commit, when a request of this
   *   queue ends, or after the tag set's `requeueDelayMs`). The driver must not have ended it.
   * - any other status: refused; mq ends it with that status. The driver must not have ended it.
   *
   * @param isLast - false when more requests follow in this batch; the driver may then hold
   *   its submission until `commitRqs` (or a request with `isLast` true).
   */
  queueRq(rq: Request, isLast: boolean): BlkStatus
  /** End of a batch (like `commit_rqs`): submit what `queueRq` held, e.g. one `io_uring_enter`. */
  commitRqs?(hwq: HwQueue): void
  /**
   * Finish a request after `rq.complete()` (like `blk_mq_ops.complete`), called from the hardware
   * queue's completion batch. Usually `rq.end(rq.status)`. Without it, mq calls `rq.end(rq.status)`.
   */
  complete?(rq: Request): void
  /**
   * A request held by the driver passed its deadline. `'done'`: mq ends it with
   * `BlkStatus.TIMEOUT` (unless the handler ended it itself); `'reset-timer'`: it gets a new
   * deadline. Without this method mq never times requests out: only the driver knows whether
   * its I/O may still write into the request's buffers (blk-mq likewise re-arms the timer of a
   * driver without `->timeout`).
   */
  timeout?(rq: Request): 'done' | 'reset-timer'
  /** Once per preallocated request, when the tag set is built: attach `rq.pdu`, bind callbacks. */
  initRequest?(rq: Request): void
  /** Once per hardware queue, after its requests exist (like `init_hctx`). */
  initHctx?(hwq: HwQueue): void
  /** Once per hardware queue from `TagSet.destroy()` (like `exit_hctx`). */
  exitHctx?(hwq: HwQueue): void
}
