/**
 * `Request`: one preallocated I/O slot per tag, like the kernel's `struct request` and the Rust
 * `kernel::block::mq::Request`.
 *
 * Owns the request's fields, its lifecycle state and the exactly-once rule for `end()`. Tag
 * bookkeeping (free stack, requeue list, completion batch, restart) belongs to `HwQueue`, which
 * the lifecycle methods call into. Nothing here knows where a request came from (virtio or not).
 *
 * ## Lifecycle and ownership
 *
 * ```
 * Idle ──tryAllocRequest──▶ Allocated ──dispatch──▶ Dispatched ──end()──▶ Ending ──▶ Idle
 * Dispatched ──RESOURCE / requeue()──▶ Requeued ──(retried in order)──▶ Dispatched
 * Dispatched ──complete()──▶ CompletePending ──(batch)──▶ Completing ──end()──▶ Ending
 * Allocated, Requeued ──end()──▶ Ending        (the owner answers or aborts it itself)
 * ```
 *
 * - **Idle**: the tag is free; nobody may touch the request. Its fields are reset and it holds no
 *   reference into guest memory.
 * - **Allocated**: `HwQueue.tryAllocRequest()` handed it to the owner (the virtio layer), which
 *   fills `op`, `sector`, segments... and then calls `HwQueue.dispatch()`, or, if it cannot
 *   (malformed input), answers it itself with `rq.end(status)`; there is no separate "free".
 * - **Dispatched**: the driver owns it (from `ops.queueRq` returning OK) until it ends it with
 *   `end()`/`endOk()` or `complete()`. The deadline runs only in this state.
 * - **Requeued**: the driver returned `RESOURCE` (or called `requeue()`); mq owns it and offers
 *   it again, in order, before new work.
 * - **CompletePending** / **Completing**: after `complete()` the request waits in its hardware
 *   queue's completion batch, then `ops.complete(rq)` (default: `rq.end(rq.status)`) finishes it.
 * - **Ending**: inside the owner's `onEnd(rq)` callback; the tag is freed right after.
 *
 * `end()` is exactly once: a second `end()`/`complete()` throws `MqError('EMQ_DOUBLE_END')`. The
 * generation number grows each time the tag is handed out; a driver that ends the request later
 * (from a timer, an io_uring completion) captures `rq.generation` when it takes the request and
 * passes it to `end()`/`complete()`, so that a late end through a handle whose tag was reused
 * throws `MqError('EMQ_STALE_END')` instead of ending someone else's I/O (`isCurrent()` lets it
 * check first). Both checks run before anything changes, so a throw leaves the request as it was.
 */
import { MqError } from './errors.js'
import type { GenDisk } from './gen-disk.js'
import type { HwQueue } from './hw-queue.js'
import { BlkStatus, ReqOp } from './status.js'

/** Lifecycle state of a {@link Request}; see the module documentation. */
export const RqState = {
  /** Tag free. */
  Idle: 0,
  /** Handed to the owner by `tryAllocRequest`, not yet dispatched. */
  Allocated: 1,
  /** Held by the driver (accepted by `queueRq`). */
  Dispatched: 2,
  /** On the hardware queue's requeue list, waiting for the driver. */
  Requeued: 3,
  /** `complete()` was called; waiting in the completion batch. */
  CompletePending: 4,
  /** Inside `ops.complete(rq)`; `end()` finishes it. */
  Completing: 5,
  /** Inside the owner's `onEnd(rq)`; the tag is freed next. */
  Ending: 6,
} as const

/** One of the {@link RqState} values. */
export type RqState = typeof RqState[keyof typeof RqState]

/** Placeholder for unused data segments, so that a free request keeps no guest memory alive. */
export const EMPTY_SEGMENT: Uint8Array = new Uint8Array(0)

/**
 * Generations wrap below 2^30 so they stay small integers in V8. A stale handle would have to
 * survive 2^30 reuses of its tag to be mistaken for a current one.
 */
const GENERATION_MASK = 0x3fff_ffff

/**
 * One I/O request. Created once per tag when the `TagSet` is built and reused for every I/O on
 * that tag: every field is initialised in the constructor so the object shape never changes.
 */
export class Request {
  /** Tag (index within its hardware queue), `0 <= tag < queueDepth`. */
  readonly tag: number
  /** Hardware queue that owns the tag. */
  readonly hwq: HwQueue
  /** Disk the request targets; set by `tryAllocRequest`, `null` while idle. */
  disk: GenDisk | null = null
  /** Operation. */
  op: ReqOp = ReqOp.Read
  /** First 512-byte sector (Read/Write). */
  sector = 0
  /** Length in 512-byte sectors (Read/Write). */
  sectors = 0
  /** `ReqFlag` bits for the whole request (e.g. FUA). */
  flags = 0
  /** Status given to `end()`/`complete()`; `OK` until then. */
  status: BlkStatus = BlkStatus.OK
  /**
   * Data segments: views into (guest) memory. The driver reads or writes bytes
   * `[segOffset[i], segOffset[i] + segLength[i])` of `segBuffer[i]` for `i < nrSegments`.
   * Preallocated with the tag set's `maxSegments` entries; the owner reassigns entries per request
   * (from index 0 upwards) and mq resets them to an empty array when the tag frees.
   */
  readonly segBuffer: Uint8Array[]
  /** Byte offset of each segment within `segBuffer[i]`. */
  readonly segOffset: Uint32Array
  /** Byte length of each segment. */
  readonly segLength: Uint32Array
  /** Number of data segments in use. */
  nrSegments = 0
  /** First sector of each discard / write-zeroes range. */
  readonly rangeSector: Float64Array
  /** Length in sectors of each range. */
  readonly rangeSectors: Uint32Array
  /** `ReqFlag` bits of each range (e.g. UNMAP). */
  readonly rangeFlags: Uint32Array
  /** Number of ranges in use. */
  nrRanges = 0
  /** Bytes the device produced into the data segments (reads, get-id); the owner reports it. */
  bytesDone = 0
  /** Driver-private data, set once in `ops.initRequest` (like `blk_mq_rq_to_pdu`). */
  pdu: unknown = null
  /** Owner-private data, set once by the tag set's `initRequest` option. */
  owner: unknown = null
  /** `performance.now()` value after which the timeout scan considers the request late (0: none). */
  deadline = 0

  /** @internal Lifecycle state; only `Request` and `HwQueue` write it. */
  _state: RqState = RqState.Idle
  /** @internal Bumped by `HwQueue` each time the tag is handed out. */
  _generation = 0

  /**
   * Called by `HwQueue` only, once per tag.
   * @internal
   */
  constructor(hwq: HwQueue, tag: number, segOffset: Uint32Array, segLength: Uint32Array,
    rangeSector: Float64Array, rangeSectors: Uint32Array, rangeFlags: Uint32Array) {
    this.hwq = hwq
    this.tag = tag
    this.segBuffer = new Array<Uint8Array>(segOffset.length).fill(EMPTY_SEGMENT)
    this.segOffset = segOffset
    this.segLength = segLength
    this.rangeSector = rangeSector
    this.rangeSectors = rangeSectors
    this.rangeFlags = rangeFlags
  }

  /** Incremented each time the tag is handed out; capture it to end the request later. */
  get generation(): number {
    return this._generation
  }

  /** True from allocation until the tag is freed. */
  get inFlight(): boolean {
    return this._state !== RqState.Idle
  }

  /** Current lifecycle state. */
  get state(): RqState {
    return this._state
  }

  /**
   * Whether a handle captured at `generation` still refers to this in-flight request and may
   * still end it (it is in flight, not yet completed, and its tag was not reused meanwhile).
   */
  isCurrent(generation: number): boolean {
    return generation === this._generation && endable(this._state)
  }

  /**
   * End the request (like `blk_mq_end_request`): record `status`, call the owner's
   * `hwq.onEnd(rq)`, free the tag. Exactly once. Allowed while allocated (the owner answers it
   * itself), dispatched, requeued (the owner aborts it) or inside `ops.complete`.
   *
   * @param generation - if given, must equal the current generation
   * @throws MqError `EMQ_STALE_END` if `generation` is stale, `EMQ_DOUBLE_END` if the request is
   *   not in flight or was already completed; the request is unchanged after the throw
   */
  end(status: BlkStatus, generation?: number): void {
    this.checkEndable(generation)
    this.hwq._endRequest(this, status)
  }

  /** `end(BlkStatus.OK, generation)`, like the Rust `Request::end_ok`. */
  endOk(generation?: number): void {
    this.checkEndable(generation)
    this.hwq._endRequest(this, BlkStatus.OK)
  }

  /**
   * Complete the request (like `blk_mq_complete_request`): record `status` and queue it on its
   * hardware queue's completion batch, where `ops.complete(rq)` (default: `rq.end(rq.status)`)
   * finishes it. For the driver, on a request it holds; the owner answers its own with `end()`.
   * The batch is drained by one `setImmediate` per batch, or earlier by
   * `HwQueue.runCompletions()`. Same exactly-once and generation checks as {@link end}.
   *
   * @throws MqError `EMQ_STALE_END`, `EMQ_DOUBLE_END` as `end()`; `EMQ_NOT_DISPATCHED` if the
   *   driver does not hold the request (allocated, requeued)
   */
  complete(status: BlkStatus, generation?: number): void {
    this.checkEndable(generation)
    if (this._state === RqState.Completing) {
      throw new MqError('EMQ_DOUBLE_END', `request ${this.hwq.index}:${this.tag} is already being completed`)
    }
    if (this._state !== RqState.Dispatched) {
      throw new MqError('EMQ_NOT_DISPATCHED', `request ${this.hwq.index}:${this.tag} is not held by the driver`)
    }
    this.hwq._completeRequest(this, status)
  }

  /**
   * Give a request the driver holds back to mq (like `blk_mq_requeue_request`), e.g. when its
   * submission failed transiently after `queueRq` accepted it. It joins the end of the requeue
   * list and is offered to `queueRq` again later. Inside `queueRq`, return `RESOURCE` instead.
   *
   * @throws MqError `EMQ_NOT_DISPATCHED` unless the driver holds the request
   */
  requeue(): void {
    if (this._state !== RqState.Dispatched) {
      throw new MqError('EMQ_NOT_DISPATCHED', `request ${this.hwq.index}:${this.tag} is not held by the driver`)
    }
    this.hwq._requeueRequest(this)
  }

  /**
   * Return the request to its idle values and drop its references into guest memory.
   * Segment entries are cleared up to `nrSegments` and on through the entries the owner filled
   * (they are filled from 0 upwards), so a parse that failed before setting `nrSegments` leaks
   * nothing either.
   * @internal
   */
  _reset(): void {
    const bufs = this.segBuffer
    const n = this.nrSegments
    const offsets = this.segOffset
    const lengths = this.segLength
    // Plain loops: TypedArray#fill on a few elements goes through a slow builtin call.
    let i = 0
    while (i < bufs.length && (i < n || bufs[i] !== EMPTY_SEGMENT)) {
      bufs[i] = EMPTY_SEGMENT
      offsets[i] = 0
      lengths[i] = 0
      i++
    }
    for (let r = 0; r < this.nrRanges; r++) {
      this.rangeSector[r] = 0
      this.rangeSectors[r] = 0
      this.rangeFlags[r] = 0
    }
    this.disk = null
    this.op = ReqOp.Read
    this.sector = 0
    this.sectors = 0
    this.flags = 0
    this.status = BlkStatus.OK
    this.nrSegments = 0
    this.nrRanges = 0
    this.bytesDone = 0
    this.deadline = 0
  }

  /** @internal Start a new life for the tag: next generation. */
  _nextGeneration(): void {
    this._generation = (this._generation + 1) & GENERATION_MASK
  }

  private checkEndable(generation: number | undefined): void {
    if (generation !== undefined && generation !== this._generation) {
      throw new MqError('EMQ_STALE_END',
        `request ${this.hwq.index}:${this.tag}: generation ${generation} is stale (now ${this._generation})`)
    }
    if (!endable(this._state)) {
      throw new MqError('EMQ_DOUBLE_END', `request ${this.hwq.index}:${this.tag} is not in flight or already completed`)
    }
  }
}

/** States from which `end()` may run. */
function endable(state: RqState): boolean {
  return state === RqState.Allocated || state === RqState.Dispatched ||
    state === RqState.Requeued || state === RqState.Completing
}
