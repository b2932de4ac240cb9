/**
 * `TagSet`: the I/O resources shared by one or more disks (the kernel's `blk_mq_tag_set`, the Rust
 * `kernel::block::mq::TagSet`).
 *
 * Owns validation of the set's options, the hardware queues (and through them every preallocated
 * request), the virtqueue-to-hardware-queue mapping and the one timer that drives the timeout
 * scan. It does not own per-request lifecycle (`Request`), dispatch (`HwQueue`) or disk geometry
 * (`GenDisk`).
 */
import { InvalidArgumentError, MqError } from './errors.js'
import { HwQueue } from './hw-queue.js'
import type { Operations } from './operations.js'
import type { Request } from './request.js'

/** Options of a {@link TagSet}. */
export interface TagSetOptions {
  /** Number of hardware queues, 1..256. */
  nrHwQueues: number
  /** Tags (requests) per hardware queue, 1..65536. */
  queueDepth: number
  /** The driver. */
  ops: Operations
  /** Data segments per request, 1..65535 (default 256). Disks may allow fewer, not more. */
  maxSegments?: number
  /** Discard / write-zeroes ranges per request, 1..65535 (default 256). */
  maxRanges?: number
  /**
   * Request timeout in ms, 0..2^31-1 (default 30000; 0 = none). Only used when the driver has an
   * `ops.timeout` handler. A request times out between `timeoutMs` and
   * `timeoutMs + min(timeoutMs, 1000)` ms after it was dispatched.
   */
  timeoutMs?: number
  /** Delay before retrying requests the driver refused with RESOURCE, 1..60000 ms (default 3, as blk-mq). */
  requeueDelayMs?: number
  /** Owner hook, once per preallocated request after `ops.initRequest` (e.g. set `rq.owner`). */
  initRequest?: (rq: Request) => void
}

/**
 * Upper bound on `queueDepth × max(maxSegments, maxRanges)` per hardware queue: 2^22 slots at
 * 24 typed-array bytes plus one array pointer each stay around 128 MiB.
 */
const MAX_SLOTS_PER_QUEUE = 1 << 22

/** Period of the timeout scan is `min(timeoutMs, SCAN_PERIOD_MAX_MS)`. */
const SCAN_PERIOD_MAX_MS = 1000

/** A set of hardware queues with their tags and preallocated requests, served by one driver. */
export class TagSet {
  /** Number of hardware queues. */
  readonly nrHwQueues: number
  /** Tags per hardware queue. */
  readonly queueDepth: number
  /** The driver. */
  readonly ops: Operations
  /** Data segments per request. */
  readonly maxSegments: number
  /** Discard / write-zeroes ranges per request. */
  readonly maxRanges: number
  /** Request timeout in ms (0 = none). */
  readonly timeoutMs: number
  /** Delay before retrying refused requests, ms. */
  readonly requeueDelayMs: number
  /** The hardware queues, by index. */
  readonly hwQueues: readonly HwQueue[]

  private readonly scanPeriodMs: number
  private scanTimer: NodeJS.Timeout | null = null
  private scanArmed = false
  private destroyed = false
  private readonly scanCallback = (): void => {
    this.scanArmed = false
    const now = performance.now()
    let again = false
    for (const hwq of this.hwQueues) {
      if (hwq._scanTimeouts(now)) again = true
    }
    if (again) this._armTimeoutScan()
  }

  /**
   * Validate the options, preallocate every request (calling `ops.initRequest`, then
   * `opts.initRequest`, for each) and call `ops.initHctx` for each hardware queue.
   *
   * @throws InvalidArgumentError naming the first bad option
   */
  constructor(opts: TagSetOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('TagSet options must be an object')
    const ops = opts.ops
    if (ops === null || typeof ops !== 'object' || typeof ops.queueRq !== 'function') {
      throw new InvalidArgumentError('TagSet ops must be an object with a queueRq method')
    }
    for (const name of ['commitRqs', 'complete', 'timeout', 'initRequest', 'initHctx', 'exitHctx'] as const) {
      if (ops[name] !== undefined && typeof ops[name] !== 'function') {
        throw new InvalidArgumentError(`TagSet ops.${name} must be a function when present`)
      }
    }
    if (opts.initRequest !== undefined && typeof opts.initRequest !== 'function') {
      throw new InvalidArgumentError('TagSet initRequest must be a function when present')
    }
    this.nrHwQueues = integerIn('nrHwQueues', opts.nrHwQueues, 1, 256)
    this.queueDepth = integerIn('queueDepth', opts.queueDepth, 1, 65536)
    this.maxSegments = integerIn('maxSegments', opts.maxSegments ?? 256, 1, 65535)
    this.maxRanges = integerIn('maxRanges', opts.maxRanges ?? 256, 1, 65535)
    this.timeoutMs = integerIn('timeoutMs', opts.timeoutMs ?? 30000, 0, 0x7fff_ffff)
    this.requeueDelayMs = integerIn('requeueDelayMs', opts.requeueDelayMs ?? 3, 1, 60000)
    if (this.queueDepth * Math.max(this.maxSegments, this.maxRanges) > MAX_SLOTS_PER_QUEUE) {
      throw new InvalidArgumentError(
        `queueDepth × max(maxSegments, maxRanges) must be at most ${MAX_SLOTS_PER_QUEUE} (preallocated per hardware queue)`)
    }
    this.ops = ops
    this.scanPeriodMs = Math.min(this.timeoutMs, SCAN_PERIOD_MAX_MS)
    // Decided once: without a handler there is nothing a timeout could do (see Operations.timeout).
    const timeoutMs = ops.timeout !== undefined ? this.timeoutMs : 0
    const hwQueues: HwQueue[] = []
    for (let i = 0; i < this.nrHwQueues; i++) hwQueues.push(new HwQueue(this, i, timeoutMs))
    this.hwQueues = Object.freeze(hwQueues)
    for (const hwq of hwQueues) {
      for (const rq of hwq.requests) {
        ops.initRequest?.(rq)
        opts.initRequest?.(rq)
      }
    }
    for (const hwq of hwQueues) ops.initHctx?.(hwq)
  }

  /** Requests in flight over all hardware queues. */
  get inFlight(): number {
    let n = 0
    for (const hwq of this.hwQueues) n += hwq.inFlight
    return n
  }

  /**
   * Hardware queue serving virtqueue `vqIndex` (like `blk_mq_map_queue`): queue `vqIndex` when
   * `vqIndex < nrHwQueues`, else `vqIndex % nrHwQueues`.
   *
   * @throws InvalidArgumentError if `vqIndex` is not a non-negative integer
   */
  mapQueue(vqIndex: number): HwQueue {
    if (!Number.isSafeInteger(vqIndex) || vqIndex < 0) {
      throw new InvalidArgumentError(`mapQueue: virtqueue index must be a non-negative integer, got ${vqIndex}`)
    }
    return this.hwQueues[vqIndex % this.nrHwQueues]
  }

  /**
   * The request of `tag` on hardware queue `hwq` (like `blk_mq_tag_to_rq`), in whatever state it is.
   *
   * @throws InvalidArgumentError if either index is out of range
   */
  tagToRq(hwq: number, tag: number): Request {
    if (!Number.isInteger(hwq) || hwq < 0 || hwq >= this.nrHwQueues) {
      throw new InvalidArgumentError(`tagToRq: hardware queue ${hwq} out of range 0..${this.nrHwQueues - 1}`)
    }
    if (!Number.isInteger(tag) || tag < 0 || tag >= this.queueDepth) {
      throw new InvalidArgumentError(`tagToRq: tag ${tag} out of range 0..${this.queueDepth - 1}`)
    }
    return this.hwQueues[hwq].requests[tag]
  }

  /**
   * Release the set (like `blk_mq_free_tag_set`): stop the timers and call `ops.exitHctx` for each
   * hardware queue. Every request must have ended first; a second call does nothing.
   *
   * @throws MqError `EMQ_BUSY` if requests are still in flight (nothing is released then)
   */
  destroy(): void {
    if (this.destroyed) return
    const inFlight = this.inFlight
    if (inFlight > 0) throw new MqError('EMQ_BUSY', `cannot destroy a tag set with ${inFlight} requests in flight`)
    this.destroyed = true
    if (this.scanTimer !== null) clearTimeout(this.scanTimer)
    this.scanTimer = null
    for (const hwq of this.hwQueues) hwq._destroy()
    for (const hwq of this.hwQueues) this.ops.exitHctx?.(hwq)
  }

  /**
   * @internal Make sure the timeout scan will run (called on each dispatch when timeouts are on).
   * One unref'd timer, created once and then re-armed with `refresh()`: no allocation per request,
   * and an idle set has no timer pending.
   */
  _armTimeoutScan(): void {
    if (this.scanArmed || this.destroyed) return
    this.scanArmed = true
    if (this.scanTimer === null) {
      this.scanTimer = setTimeout(this.scanCallback, this.scanPeriodMs)
      this.scanTimer.unref()
    } else {
      this.scanTimer.refresh()
    }
  }
}

/** Validate an integer option; returns it. */
function integerIn(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`TagSet ${name} must be an integer in ${min}..${max}, got ${String(value)}`)
  }
  return value
}
