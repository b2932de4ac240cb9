/**
 * `HwQueue`: one hardware queue of a tag set (the kernel's `blk_mq_hw_ctx`).
 *
 * Owns the queue's tags and everything that moves requests between owner and driver: the free
 * tag stack, dispatch to `ops.queueRq`, the requeue list for `RESOURCE`, the completion batch for
 * `rq.complete()`, the stopped/restart handshake with the owner and the per-queue half of the
 * timeout scan. It does not own the request fields or the exactly-once checks (`Request`), the
 * timer that drives the scan (`TagSet`), nor anything about where requests come from.
 *
 * ## Re-entrancy
 *
 * Drivers may end requests synchronously inside `queueRq`, and owners react to `onEnd` and
 * `onRestart`, so calls nest. The rule kept here: while mq is inside one of its own operations on
 * this queue (`busy > 0`: a driver call, the owner's `onEnd`, a completion batch, a timeout scan),
 * nothing calls into the driver again. What becomes possible meanwhile (a requeued request to
 * retry, a deferred `dispatch()`/`commit()`, a restart) is recorded in `kickPending` and done by
 * `settle()` once the outermost operation returns. `onRestart` therefore never runs inside a
 * driver call, but it does run synchronously inside `rq.end()` when a driver ends a request from
 * its own callback, and at the end of `dispatch()`/`commit()`: the owner must guard its own loop
 * against re-entry (e.g. an `entered` flag around its kick handler).
 */
import { InvalidArgumentError, MqError } from './errors.js'
import type { GenDisk } from './gen-disk.js'
import type { Operations } from './operations.js'
import { Request, RqState } from './request.js'
import { BlkStatus } from './status.js'
import type { TagSet } from './tag-set.js'

/** Default for the owner callbacks, so that calling them needs no check. */
function noop(): void {}

/** One hardware queue: `queueDepth` tags, each with its preallocated {@link Request}. */
export class HwQueue {
  /** Index within the tag set. */
  readonly index: number
  /** Tag set this queue belongs to. */
  readonly tagSet: TagSet
  /** The request of each tag (`requests[tag]`). */
  readonly requests: readonly Request[]

  /**
   * Set by the owner: called once per ended request, before its tag is freed, with `rq.status`
   * set and every field still intact (the virtio layer writes the status byte and the used
   * element here). It must not keep the request. A `dispatch()`/`commit()` made from here is
   * deferred until the end returns.
   */
  onEnd: (rq: Request) => void = noop
  /**
   * Set by the owner: called synchronously, after the tag was freed, when `tryAllocRequest` had
   * returned null (queue stopped) and a tag is free again; the owner resumes taking work. Requests
   * on the requeue list have been retried first. See the module notes on re-entrancy.
   */
  onRestart: () => void = noop
  /**
   * Set by the owner: called after each completion batch (requests finished through
   * `rq.complete()`) was drained, e.g. to publish the used index and notify the guest once.
   */
  onCompletionBatchEnd: () => void = noop

  private readonly ops: Operations
  /** Free tags, used as a stack (LIFO: the most recently freed request is the cache-warm one). */
  private readonly freeTags: Uint16Array
  private freeTop: number
  /** Requeue list: doubly linked through tags so that ending a requeued request unlinks in O(1). */
  private readonly rqNext: Int32Array
  private readonly rqPrev: Int32Array
  private rqHead = -1
  private rqTail = -1
  /** Completion batch: ring of tags. Each request is on it at most once, so `queueDepth` slots suffice. */
  private readonly cq: Uint16Array
  private cqHead = 0
  private cqCount = 0
  private cqImmediate: NodeJS.Immediate | null = null
  private draining = false
  private readonly drainCallback = (): void => {
    this.cqImmediate = null
    this.runCompletions()
  }
  /** Delayed retry of the requeue list (blk-mq's `BLK_MQ_RESOURCE_DELAY`); created once, then refreshed. */
  private requeueTimer: NodeJS.Timeout | null = null
  private requeueTimerArmed = false
  private readonly requeueCallback = (): void => {
    this.requeueTimerArmed = false
    if (this.rqHead >= 0) this.kick()
  }
  private readonly requeueDelayMs: number
  /** Timeout in ms when the driver has a timeout handler, else 0 (no deadlines, no scan). */
  private readonly timeoutMs: number
  /** Nesting depth of mq operations on this queue; see the module notes. */
  private busy = 0
  private kickPending = false
  private commitPending = false
  private settling = false
  private _stopped = false
  private destroyed = false

  /**
   * Built by `TagSet` only.
   * @internal
   */
  constructor(tagSet: TagSet, index: number, timeoutMs: number) {
    this.tagSet = tagSet
    this.index = index
    this.ops = tagSet.ops
    this.timeoutMs = timeoutMs
    this.requeueDelayMs = tagSet.requeueDelayMs
    const depth = tagSet.queueDepth
    const segs = tagSet.maxSegments
    const ranges = tagSet.maxRanges
    // One backing store per array kind for the whole queue; each request gets subarray views.
    const segOffset = new Uint32Array(depth * segs)
    const segLength = new Uint32Array(depth * segs)
    const rangeSector = new Float64Array(depth * ranges)
    const rangeSectors = new Uint32Array(depth * ranges)
    const rangeFlags = new Uint32Array(depth * ranges)
    const requests: Request[] = []
    for (let tag = 0; tag < depth; tag++) {
      const s = tag * segs
      const r = tag * ranges
      requests.push(new Request(this, tag,
        segOffset.subarray(s, s + segs), segLength.subarray(s, s + segs),
        rangeSector.subarray(r, r + ranges), rangeSectors.subarray(r, r + ranges), rangeFlags.subarray(r, r + ranges)))
    }
    this.requests = requests
    // INVARIANT: depth <= 65536 (checked by TagSet), so every tag fits a Uint16Array slot.
    this.freeTags = new Uint16Array(depth)
    // Fill so that tag 0 is handed out first.
    for (let i = 0; i < depth; i++) this.freeTags[i] = depth - 1 - i
    this.freeTop = depth
    this.rqNext = new Int32Array(depth).fill(-1)
    this.rqPrev = new Int32Array(depth).fill(-1)
    this.cq = new Uint16Array(depth)
  }

  /** Number of tags in use (allocated and not yet ended). */
  get inFlight(): number {
    return this.requests.length - this.freeTop
  }

  /** True after `tryAllocRequest` found no free tag, until `onRestart` is called. */
  get stopped(): boolean {
    return this._stopped
  }

  /** Number of requests waiting on the requeue list. */
  get requeued(): number {
    let n = 0
    for (let t = this.rqHead; t >= 0; t = this.rqNext[t]) n++
    return n
  }

  /**
   * Take a free tag and start its request for `disk`: generation bumped, state Allocated, every
   * other field at its idle value. Returns null when all tags are busy and marks the queue
   * stopped (like `blk_mq_stop_hw_queue`): `onRestart` fires when a tag frees.
   *
   * @throws InvalidArgumentError if `disk` belongs to another tag set
   * @throws MqError `EMQ_DESTROYED` after `TagSet.destroy()`
   */
  tryAllocRequest(disk: GenDisk): Request | null {
    if (disk.tagSet !== this.tagSet) throw new InvalidArgumentError(`disk ${disk.name} belongs to another tag set`)
    if (this.destroyed) throw new MqError('EMQ_DESTROYED', `hardware queue ${this.index} was destroyed`)
    if (this.freeTop === 0) {
      this._stopped = true
      return null
    }
    const rq = this.requests[this.freeTags[--this.freeTop]]
    rq._nextGeneration()
    rq._state = RqState.Allocated
    rq.disk = disk
    return rq
  }

  /**
   * Hand an allocated request to the driver. Requests waiting on the requeue list go first, in
   * order; if the driver is still busy, `rq` joins the end of the list. `ops.queueRq` returning
   * RESOURCE puts the request on the requeue list, another non-OK status ends it with that
   * status (the owner's `onEnd` runs before this returns). Call `commit()` after the last request
   * of a batch.
   *
   * @param isLast - false when the owner will dispatch more requests in this batch
   * @throws MqError `EMQ_WRONG_QUEUE` if `rq` belongs to another queue, `EMQ_NOT_STARTED` unless
   *   `rq` is freshly allocated, `EMQ_DRIVER_CONTRACT` if the driver broke the `queueRq` contract
   */
  dispatch(rq: Request, isLast: boolean): void {
    if (rq.hwq !== this) throw new MqError('EMQ_WRONG_QUEUE', `request ${rq.hwq.index}:${rq.tag} dispatched on queue ${this.index}`)
    if (rq._state !== RqState.Allocated) {
      throw new MqError('EMQ_NOT_STARTED', `request ${this.index}:${rq.tag} is not freshly allocated (state ${rq._state})`)
    }
    if (this.busy > 0) {
      // Nested inside an mq operation (e.g. from onEnd): never re-enter the driver; settle() sends it.
      this.linkTail(rq)
      this.kickPending = true
      return
    }
    this.busy++
    try {
      if (this.rqHead >= 0) {
        this.linkTail(rq)
        this.runRequeue(isLast, false)
      } else if (this.issue(rq, isLast) === BlkStatus.RESOURCE) {
        this.linkTail(rq)
        this.scheduleRequeueRun()
      }
    } finally {
      this.busy--
    }
    if (this.kickPending) this.settle()
  }

  /** End of a batch: retry the requeue list, then `ops.commitRqs(this)` (like `commit_rqs`). */
  commit(): void {
    if (this.busy > 0) {
      this.commitPending = true
      this.kickPending = true
      return
    }
    this.busy++
    try {
      if (this.rqHead >= 0) this.runRequeue(false, false)
      this.ops.commitRqs?.(this)
    } finally {
      this.busy--
    }
    if (this.kickPending) this.settle()
  }

  /**
   * Drain the completion batch now: `ops.complete(rq)` (default `rq.end(rq.status)`) for every
   * request completed with `rq.complete()` since the last drain, in completion order, then
   * `onCompletionBatchEnd`. mq schedules this with one `setImmediate` when a batch starts (so
   * all completions of one event-loop turn form one batch); an owner may call it earlier.
   * A call from inside an mq operation on this queue does nothing: the scheduled drain follows.
   */
  runCompletions(): void {
    if (this.cqCount === 0 || this.busy > 0) return
    if (this.cqImmediate !== null) {
      clearImmediate(this.cqImmediate)
      this.cqImmediate = null
    }
    const ops = this.ops
    this.draining = true
    this.busy++
    try {
      while (this.cqCount > 0) {
        const rq = this.requests[this.cq[this.cqHead]]
        if (++this.cqHead === this.cq.length) this.cqHead = 0
        this.cqCount--
        rq._state = RqState.Completing
        if (ops.complete !== undefined) ops.complete(rq)
        else this._endRequest(rq, rq.status)
      }
    } finally {
      this.busy--
      this.draining = false
      // Only after a throw: keep the rest of the batch going.
      if (this.cqCount > 0 && this.cqImmediate === null) this.cqImmediate = setImmediate(this.drainCallback)
    }
    this.onCompletionBatchEnd()
    if (this.kickPending) this.settle()
  }

  /** @internal `Request.end()`, after its checks: run `onEnd`, free the tag, restart if due. */
  _endRequest(rq: Request, status: BlkStatus): void {
    if (rq._state === RqState.Requeued) this.unlink(rq.tag)
    rq.status = status
    rq._state = RqState.Ending
    this.busy++
    try {
      this.onEnd(rq)
    } finally {
      this.busy--
      rq._reset()
      rq._state = RqState.Idle
      this.freeTags[this.freeTop++] = rq.tag
      if (this.rqHead >= 0 || this._stopped) this.kickPending = true
    }
    if (this.kickPending && this.busy === 0) this.settle()
  }

  /** @internal `Request.complete()`, after its checks: queue it on the completion batch. */
  _completeRequest(rq: Request, status: BlkStatus): void {
    rq.status = status
    rq._state = RqState.CompletePending
    let slot = this.cqHead + this.cqCount
    if (slot >= this.cq.length) slot -= this.cq.length
    this.cq[slot] = rq.tag
    this.cqCount++
    if (this.cqImmediate === null && !this.draining) this.cqImmediate = setImmediate(this.drainCallback)
  }

  /** @internal `Request.requeue()`: back on the requeue list, retried later. */
  _requeueRequest(rq: Request): void {
    this.linkTail(rq)
    this.scheduleRequeueRun()
  }

  /**
   * @internal Timeout scan of this queue (driven by the `TagSet` timer): every request the driver
   * holds past its deadline goes to `ops.timeout`. Returns whether any request still has a
   * deadline, i.e. whether the scan must run again.
   */
  _scanTimeouts(now: number): boolean {
    const timeout = this.ops.timeout
    if (this.timeoutMs === 0 || timeout === undefined) return false
    let armed = false
    this.busy++
    try {
      for (let tag = 0; tag < this.requests.length; tag++) {
        const rq = this.requests[tag]
        if (rq._state !== RqState.Dispatched) continue
        if (rq.deadline > now) {
          armed = true
          continue
        }
        const generation = rq._generation
        const verdict = timeout.call(this.ops, rq)
        // The handler may have ended, completed or requeued it itself: then it is no longer ours to touch.
        if (rq._generation !== generation || rq._state !== RqState.Dispatched) continue
        if (verdict === 'done') {
          this._endRequest(rq, BlkStatus.TIMEOUT)
        } else {
          rq.deadline = now + this.timeoutMs
          armed = true
        }
      }
    } finally {
      this.busy--
    }
    if (this.kickPending) this.settle()
    return armed
  }

  /** @internal From `TagSet.destroy()`, when no request is in flight: stop timers. */
  _destroy(): void {
    this.destroyed = true
    if (this.requeueTimer !== null) clearTimeout(this.requeueTimer)
    if (this.cqImmediate !== null) clearImmediate(this.cqImmediate)
    this.requeueTimer = null
    this.cqImmediate = null
  }

  /**
   * Give the request to the driver. Returns the driver's status; on RESOURCE the request is left
   * in state Requeued for the caller to link, on another non-OK status it has been ended.
   */
  private issue(rq: Request, isLast: boolean): BlkStatus {
    rq._state = RqState.Dispatched
    if (this.timeoutMs > 0) {
      rq.deadline = performance.now() + this.timeoutMs
      this.tagSet._armTimeoutScan()
    }
    const generation = rq._generation
    const status = this.ops.queueRq(rq, isLast)
    if (status === BlkStatus.OK) return status
    if (rq._generation !== generation || rq._state !== RqState.Dispatched) {
      throw new MqError('EMQ_DRIVER_CONTRACT',
        `queueRq returned status ${status} for request ${this.index}:${rq.tag} after ending or requeueing it`)
    }
    if (status === BlkStatus.RESOURCE) {
      rq._state = RqState.Requeued
      rq.deadline = 0
    } else {
      this._endRequest(rq, status)
    }
    return status
  }

  /**
   * Offer the requeue list to the driver in order until it is empty or the driver says RESOURCE
   * again. Runs with `busy > 0`.
   *
   * @param lastHint - whether the list's last request ends the batch (`isLast` for it)
   * @param commitAtEnd - call `commitRqs` if the driver was told more would follow and then
   *   nothing did (blk-mq's `needs_commit`); false when the caller commits anyway
   */
  private runRequeue(lastHint: boolean, commitAtEnd: boolean): void {
    let uncommitted = false
    while (this.rqHead >= 0) {
      const tag = this.rqHead
      this.unlink(tag)
      const isLast = lastHint && this.rqHead < 0
      const status = this.issue(this.requests[tag], isLast)
      if (status === BlkStatus.RESOURCE) {
        this.linkHead(tag)
        break
      }
      if (status === BlkStatus.OK) uncommitted = !isLast
    }
    if (this.rqHead >= 0) this.scheduleRequeueRun()
    if (commitAtEnd && uncommitted) this.ops.commitRqs?.(this)
  }

  /** Ask `settle()` to run now if nothing is in progress on this queue, else when it ends. */
  private kick(): void {
    this.kickPending = true
    if (this.busy === 0) this.settle()
  }

  /**
   * Do what was deferred while mq was busy: retry the requeue list, run a deferred commit, then
   * restart a stopped queue. Runs at `busy === 0` only; a nested call (from the owner's
   * `onRestart`) returns at once and the loop here picks up whatever it left pending.
   */
  private settle(): void {
    if (this.settling || this.destroyed) return
    this.settling = true
    try {
      while (this.kickPending) {
        this.kickPending = false
        this.busy++
        try {
          if (this.rqHead >= 0) this.runRequeue(true, !this.commitPending)
          if (this.commitPending) {
            this.commitPending = false
            this.ops.commitRqs?.(this)
          }
        } finally {
          this.busy--
        }
        if (this._stopped && this.freeTop > 0) {
          this._stopped = false
          this.onRestart()
        }
      }
    } finally {
      this.settling = false
    }
  }

  private scheduleRequeueRun(): void {
    if (this.requeueTimerArmed || this.destroyed) return
    this.requeueTimerArmed = true
    if (this.requeueTimer === null) this.requeueTimer = setTimeout(this.requeueCallback, this.requeueDelayMs)
    else this.requeueTimer.refresh()
  }

  private linkTail(rq: Request): void {
    const tag = rq.tag
    rq._state = RqState.Requeued
    rq.deadline = 0
    this.rqNext[tag] = -1
    this.rqPrev[tag] = this.rqTail
    if (this.rqTail >= 0) this.rqNext[this.rqTail] = tag
    else this.rqHead = tag
    this.rqTail = tag
  }

  /** Put back a request that `runRequeue` had just taken off the head (state already Requeued). */
  private linkHead(tag: number): void {
    this.rqPrev[tag] = -1
    this.rqNext[tag] = this.rqHead
    if (this.rqHead >= 0) this.rqPrev[this.rqHead] = tag
    else this.rqTail = tag
    this.rqHead = tag
  }

  private unlink(tag: number): void {
    const prev = this.rqPrev[tag]
    const next = this.rqNext[tag]
    if (prev >= 0) this.rqNext[prev] = next
    else this.rqHead = next
    if (next >= 0) this.rqPrev[next] = prev
    else this.rqTail = prev
    this.rqPrev[tag] = -1
    this.rqNext[tag] = -1
  }
}
