/**
 * The load generator: keeps `iodepth` virtio-blk reads or writes in flight on each of the first
 * `queues` queues of a connected VhostUserBlkClient for a fixed time (or a fixed number of I/Os),
 * like fio with a fixed queue depth per job, and counts what completed: I/Os, bytes, errors and a
 * latency histogram. `vhost-user-blk bench` and the benchmark matrix are built on it.
 *
 * Owns: the per-queue request slots in guest RAM, the offset pattern, the run's phases (ramp,
 * measured window, drain) and its counters. Does not own: the connection and handshake
 * (client.ts), the ring mechanics (SplitQueueDriver), or reporting and CPU sampling of other
 * processes (src/bench; the window hooks let it sample at the exact window edges).
 *
 * The generator must never be the bottleneck, so its hot path is lean:
 * - Each queue is claimed (ClientQueue.claim): no promise or record per request, completions
 *   arrive as one callback per call-eventfd wakeup.
 * - Every slot (out-header, data buffer, status byte, its DriverSegment list and views over the
 *   header and status) is laid out once; an I/O rewrites the header's sector, re-arms the status
 *   byte and adds the slot's chain again (indirect when negotiated, as Linux's virtio_blk does).
 * - A wakeup reaps every used element, then resubmits the freed slots, publishing avail.idx every
 *   `submitBatch` requests and at the end, and kicking only when the back-end asked (EVENT_IDX
 *   avail_event or VIRTQ_USED_F_NO_NOTIFY); while it is busy it asks for nothing, so a batch
 *   costs one kick at most. Reaping writes used_event, so the back-end interrupts only when it has
 *   something new (SplitQueueDriver.reapUsed).
 * - One clock read per wakeup (completions) and one per publish (submissions), not per I/O.
 */
import {
  VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_RING_F_INDIRECT_DESC,
} from '../blk/spec.js'
import { hasFeature } from '../vhost/messages.js'
import type { DriverSegment, SplitQueueDriver } from '../virtqueue/index.js'
import { STATUS_NOT_WRITTEN } from './blk-request.js'
import type { VhostUserBlkClient } from './client.js'
import { VhostUserClientError } from './errors.js'
import type { GuestRam } from './guest-ram.js'
import { LatencyHistogram } from './latency.js'
import type { RingLease, RingOwner } from './queue.js'

/** Access pattern: random or sequential, reads or writes (fio's `rw` names). */
export type LoadPattern = 'randread' | 'randwrite' | 'read' | 'write'

/** The patterns, for option parsing. */
export const LOAD_PATTERNS: readonly LoadPattern[] = ['randread', 'randwrite', 'read', 'write']

/** What to run. */
export interface LoadOptions {
  /** Access pattern. */
  rw: LoadPattern
  /** Bytes per I/O: a positive multiple of 512 and of the device's logical block size. */
  bs: number
  /** Requests kept in flight on each queue. */
  iodepth: number
  /** Use queues 0..queues-1 of the client. */
  queues: number
  /** Length of the measured window in ms. */
  runtimeMs: number
  /** Warm-up before the window, in ms; its I/Os are not counted (default 0). */
  rampMs?: number
  /** Stop issuing after this many I/Os in total (ramp included); the run ends once they complete. */
  ioLimit?: number
  /** Seed of the random offsets (default 1). */
  seed?: number
  /** Use indirect descriptor tables (default: when negotiated, as Linux's virtio_blk does). */
  indirect?: boolean
  /**
   * Publish avail.idx (and kick if asked) after this many resubmissions within one wakeup, like
   * fio's iodepth_batch_submit. Default: once per wakeup, after all of them (the fewest kicks:
   * on a VM an eventfd write that wakes the other side costs microseconds). 1 makes each request
   * visible at once, so the back-end can start while the generator is still resubmitting.
   */
  submitBatch?: number
  /** Called synchronously when the measured window opens (sample other processes' CPU here). */
  onWindowStart?: () => void
  /** Called synchronously when the measured window closes. */
  onWindowEnd?: () => void
}

/** What a run measured, over the window only. */
export interface LoadResult {
  /** I/Os completed in the window. */
  ios: number
  /** Bytes they moved. */
  bytes: number
  /** Completions whose status byte was not VIRTIO_BLK_S_OK. */
  errors: number
  /** Length of the window in ms. */
  elapsedMs: number
  /** Completion latencies (from the avail publish to the wakeup that reaped them). */
  latency: LatencyHistogram
  /** This process's CPU time in the window (process.cpuUsage), in µs. */
  cpuUserUs: number
  /** Kernel part of it, in µs. */
  cpuSystemUs: number
  /** Kick eventfd writes in the window (kicks per I/O shows how well notifications are batched). */
  kicks: number
  /** Call eventfd wakeups in the window. */
  wakeups: number
}

/** Bytes of guest RAM a client needs for runLoad with these options, rings included. */
export function loadMemoryBytes(opts: Pick<LoadOptions, 'bs' | 'iodepth' | 'queues'>, queueSize = 256): number {
  const perSlot = align(opts.bs + SLOT_TRAILER, SLOT_ALIGN)
  // Rings plus a pool of indirect tables (one per descriptor, up to queueSize entries each).
  const perQueueRings = 64 * 1024 + queueSize * queueSize * 16
  const total = opts.queues * (opts.iodepth * perSlot + perQueueRings) + (4 << 20)
  return align(total, 1 << 20)
}

/**
 * Runs the load on `client` (which must have no submissions pending on the queues used) and
 * resolves when the window has closed and every request in flight has completed; the queues are
 * released and the slots freed again, so a client may run several loads in turn. Rejects with
 * VhostUserClientError: EFRONTEND_ARGUMENT for options the device cannot take, EFRONTEND_BUSY for
 * a busy queue, EFRONTEND_CLOSED when the back-end goes away, EFRONTEND_TIMEOUT when
 * requests are still in flight 10 s after the window closed, EFRONTEND_PROTOCOL when the back-end
 * corrupts the used ring.
 */
export function runLoad(client: VhostUserBlkClient, opts: LoadOptions): Promise<LoadResult> {
  return new Promise<LoadResult>((resolve, reject) => {
    // A throw here (bad options) becomes the promise's rejection.
    const run = new LoadRun(client.guest, planLoad(client, opts), opts, resolve, reject)
    run.start(client)
  })
}

/** Bytes after the data buffer in a slot: the 16-byte out-header, then the status byte. */
const SLOT_TRAILER = 32
/** Slots start on pages, as O_DIRECT buffers of a guest would. */
const SLOT_ALIGN = 4096
const SECTOR_SIZE = 512
const OUTHDR_SIZE = 16
const DRAIN_TIMEOUT_MS = 10_000
const TWO_POW_32 = 2 ** 32

/** Options checked against the device, and the numbers derived from them. */
interface LoadPlan {
  write: boolean
  random: boolean
  bs: number
  iodepth: number
  queues: number
  indirect: boolean
  /** Largest data descriptor (0: no limit). */
  maxSegment: number
  /** Number of `bs` blocks each queue covers. */
  regionBlocks: number
  /** Sector where queue q's region starts is q * regionSectors. */
  regionSectors: number
  ioLimit: number
  seed: number
  submitBatch: number
}

function planLoad(client: VhostUserBlkClient, opts: LoadOptions): LoadPlan {
  const bad = (msg: string): never => { throw new VhostUserClientError('EFRONTEND_ARGUMENT', msg) }
  const f = client.features
  const cfg = client.config
  if (!LOAD_PATTERNS.includes(opts.rw)) bad(`rw must be one of ${LOAD_PATTERNS.join(', ')} (got ${opts.rw})`)
  const write = opts.rw === 'randwrite' || opts.rw === 'write'
  if (write && hasFeature(f, VIRTIO_BLK_F_RO)) bad('the device is read-only')
  const block = hasFeature(f, VIRTIO_BLK_F_BLK_SIZE) && cfg.blkSize > 0 ? cfg.blkSize : SECTOR_SIZE
  if (!Number.isSafeInteger(opts.bs) || opts.bs <= 0 || opts.bs % SECTOR_SIZE !== 0 || opts.bs % block !== 0) {
    bad(`bs ${opts.bs} is not a positive multiple of 512 and of the logical block size ${block}`)
  }
  if (!Number.isInteger(opts.queues) || opts.queues < 1 || opts.queues > client.numQueues) {
    bad(`queues must be 1..${client.numQueues} (got ${opts.queues})`)
  }
  if (!Number.isInteger(opts.iodepth) || opts.iodepth < 1) bad(`iodepth must be a positive integer (got ${opts.iodepth})`)
  if (!(opts.runtimeMs > 0) || !((opts.rampMs ?? 0) >= 0)) bad('runtime must be positive and ramp not negative')
  const ioLimit = opts.ioLimit ?? Infinity
  if (!(ioLimit >= 1)) bad(`ioLimit must be at least 1 (got ${ioLimit})`)
  const submitBatch = opts.submitBatch ?? opts.iodepth
  if (!Number.isInteger(submitBatch) || submitBatch < 1) bad(`submitBatch must be a positive integer (got ${submitBatch})`)
  const indirect = opts.indirect ?? hasFeature(f, VIRTIO_RING_F_INDIRECT_DESC)
  if (indirect && !hasFeature(f, VIRTIO_RING_F_INDIRECT_DESC)) bad('indirect descriptors were not negotiated')
  const maxSegment = hasFeature(f, VIRTIO_BLK_F_SIZE_MAX) ? cfg.sizeMax : 0
  const dataSegs = maxSegment > 0 ? Math.ceil(opts.bs / maxSegment) : 1
  if (hasFeature(f, VIRTIO_BLK_F_SEG_MAX) && cfg.segMax > 0 && dataSegs > cfg.segMax) {
    bad(`bs ${opts.bs} needs ${dataSegs} segments of size_max ${maxSegment}, the device takes ${cfg.segMax}`)
  }
  const capacityBytes = cfg.capacity * SECTOR_SIZE
  const regionBlocks = Math.floor(capacityBytes / opts.queues / opts.bs)
  if (regionBlocks < 1) bad(`a disk of ${capacityBytes} bytes has no room for ${opts.queues} regions of bs ${opts.bs}`)
  return {
    write, random: opts.rw === 'randread' || opts.rw === 'randwrite', bs: opts.bs, iodepth: opts.iodepth, queues: opts.queues,
    indirect, maxSegment, regionBlocks, regionSectors: (regionBlocks * opts.bs) / SECTOR_SIZE, ioLimit,
    seed: (opts.seed ?? 1) | 0,
    submitBatch,
  }
}

/** One run: phases, shared counters, and the queues taking part. */
class LoadRun {
  readonly latency = new LatencyHistogram()
  measuring = false
  /** New I/Os may be issued. */
  issuing = true
  issued = 0
  ios = 0
  errors = 0
  kicks = 0
  wakeups = 0
  private readonly queues: QueueLoad[] = []
  private windowStart = 0
  private windowEnd = 0
  private cpuStart: NodeJS.CpuUsage = { user: 0, system: 0 }
  private cpu: NodeJS.CpuUsage = { user: 0, system: 0 }
  private timers: NodeJS.Timeout[] = []
  private windowClosed = false
  private finished = false

  constructor(
    private readonly ram: GuestRam,
    readonly plan: LoadPlan,
    private readonly opts: LoadOptions,
    private readonly resolve: (r: LoadResult) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  start(client: VhostUserBlkClient): void {
    try {
      for (let q = 0; q < this.plan.queues; q++) this.queues.push(new QueueLoad(this, q, client))
      const ramp = this.opts.rampMs ?? 0
      if (ramp > 0) this.timers.push(setTimeout(() => this.openWindow(), ramp))
      else this.openWindow()
      this.timers.push(setTimeout(() => this.closeWindow(), ramp + this.opts.runtimeMs))
      for (const q of this.queues) q.fill()
    } catch (err) {
      this.fail(err as Error)
    }
  }

  /** Takes one I/O from the limit; false once it is used up. */
  takeIo(): boolean {
    if (!this.issuing) return false
    if (this.issued >= this.plan.ioLimit) {
      this.issuing = false
      return false
    }
    this.issued++
    return true
  }

  /** A queue has nothing in flight any more: the run ends when all are idle and no more will be issued. */
  queueIdle(): void {
    if (this.issued >= this.plan.ioLimit) this.issuing = false
    if (this.issuing || this.finished) return
    for (const q of this.queues) if (q.inFlight > 0) return
    if (this.windowClosed) this.finish()
    else this.closeWindow()
  }

  fail(err: Error): void {
    if (this.finished) return
    this.finished = true
    this.teardown()
    this.reject(err)
  }

  private openWindow(): void {
    if (this.finished || this.windowClosed) return
    this.latency.reset()
    this.ios = 0
    this.errors = 0
    this.kicks = 0
    this.wakeups = 0
    this.measuring = true
    this.opts.onWindowStart?.()
    this.cpuStart = process.cpuUsage()
    this.windowStart = performance.now()
  }

  /** Ends the window (time is up, or the I/O limit is done) and stops issuing; finishes once idle. */
  private closeWindow(): void {
    if (this.finished || this.windowClosed) return
    this.windowClosed = true
    if (this.measuring) {
      this.windowEnd = performance.now()
      this.cpu = process.cpuUsage(this.cpuStart)
      this.measuring = false
      this.opts.onWindowEnd?.()
    }
    this.issuing = false
    for (const q of this.queues) {
      if (q.inFlight > 0) {
        this.timers.push(setTimeout(() => {
          this.fail(new VhostUserClientError('EFRONTEND_TIMEOUT', `requests still in flight ${DRAIN_TIMEOUT_MS} ms after the run ended`))
        }, DRAIN_TIMEOUT_MS))
        return
      }
    }
    this.finish()
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.teardown()
    this.resolve({
      ios: this.ios,
      bytes: this.ios * this.plan.bs,
      errors: this.errors,
      elapsedMs: this.windowEnd - this.windowStart,
      latency: this.latency,
      cpuUserUs: this.cpu.user,
      cpuSystemUs: this.cpu.system,
      kicks: this.kicks,
      wakeups: this.wakeups,
    })
  }

  private teardown(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers = []
    for (const q of this.queues) q.dispose(this.ram)
  }
}

/** One claimed queue and its slots. */
class QueueLoad implements RingOwner {
  inFlight = 0
  private readonly lease: RingLease
  private readonly driver: SplitQueueDriver
  private readonly slotGpa: number[] = []
  private readonly slotBytes: number
  private readonly segs: DriverSegment[][] = []
  private readonly header: DataView[] = []
  private readonly status: Uint8Array[] = []
  /** Per slot: when its request was published (performance.now() ms). */
  private readonly submitted: Float64Array
  /** Ring head → slot. */
  private readonly slotOfHead: Int32Array
  /** Slots reaped in the current wakeup. */
  private readonly freed: Int32Array
  /** Slots added since the last publish. */
  private readonly batch: Int32Array
  private batchLen = 0
  private readonly regionStart: number
  private readonly sectorsPerIo: number
  private cursor = 0
  private rng: number
  private disposed = false

  constructor(private readonly run: LoadRun, readonly index: number, client: VhostUserBlkClient) {
    const { plan } = run
    const ram = client.guest
    this.lease = client.claimQueue(index, this)
    this.driver = this.lease.driver
    const chainLen = 2 + (plan.maxSegment > 0 ? Math.ceil(plan.bs / plan.maxSegment) : 1)
    const needed = plan.iodepth * (plan.indirect ? 1 : chainLen)
    if (needed > this.driver.size || (plan.indirect && plan.iodepth > this.driver.numFreeIndirect())) {
      this.lease.release()
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `iodepth ${plan.iodepth} needs ${needed} descriptors, the queue has ${this.driver.size}`)
    }
    this.submitted = new Float64Array(plan.iodepth)
    this.slotOfHead = new Int32Array(this.driver.size).fill(-1)
    this.batch = new Int32Array(plan.iodepth)
    this.freed = new Int32Array(plan.iodepth)
    this.regionStart = plan.random ? 0 : index * plan.regionSectors
    this.sectorsPerIo = plan.bs / SECTOR_SIZE
    // xorshift32 needs a non-zero state (| 1); each queue gets its own stream.
    this.rng = (Math.imul(plan.seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) | 1
    this.slotBytes = align(plan.bs + SLOT_TRAILER, SLOT_ALIGN)
    const fill = new Uint8Array(plan.bs).fill(0xa5)
    for (let s = 0; s < plan.iodepth; s++) {
      const gpa = ram.alloc(this.slotBytes, SLOT_ALIGN)
      if (gpa < 0) {
        this.dispose(ram)
        throw new VhostUserClientError('EFRONTEND_ARGUMENT', `guest RAM too small for ${plan.queues} x ${plan.iodepth} buffers of ${plan.bs} bytes`)
      }
      this.slotGpa.push(gpa)
      if (plan.write) ram.memory.write(gpa, fill)
      const hdrGpa = gpa + plan.bs
      const statusGpa = hdrGpa + OUTHDR_SIZE
      const w = ram.memory.windows[ram.memory.findWindow(hdrGpa, SLOT_TRAILER)]
      const off = w.bytes.byteOffset + (hdrGpa - w.gpa)
      this.header.push(new DataView(w.bytes.buffer, off, OUTHDR_SIZE))
      this.status.push(new Uint8Array(w.bytes.buffer, off + OUTHDR_SIZE, 1))
      this.header[s].setUint32(0, plan.write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, true)
      this.header[s].setUint32(4, 0, true)
      const segs: DriverSegment[] = [{ gpa: hdrGpa, len: OUTHDR_SIZE, writable: false }]
      const step = plan.maxSegment > 0 ? plan.maxSegment : plan.bs
      for (let at = 0; at < plan.bs; at += step) segs.push({ gpa: gpa + at, len: Math.min(step, plan.bs - at), writable: !plan.write })
      segs.push({ gpa: statusGpa, len: 1, writable: true })
      this.segs.push(segs)
    }
  }

  /** Issues the first request of every slot. */
  fill(): void {
    for (let s = 0; s < this.segs.length && this.run.takeIo(); s++) this.submit(s)
    this.publish()
    if (this.inFlight === 0) this.run.queueIdle()
  }

  onCall(): void {
    const run = this.run
    try {
      // Reap everything first, under one timestamp: a request resubmitted in this wakeup may
      // complete before the wakeup ends, and must not be reaped with a clock read before its publish.
      const now = performance.now()
      const driver = this.driver
      const measuring = run.measuring
      if (measuring) run.wakeups++
      let freed = 0
      let head: number
      while ((head = driver.reapUsed()) >= 0) {
        const slot = this.slotOfHead[head]
        this.slotOfHead[head] = -1
        this.inFlight--
        if (measuring) {
          run.ios++
          if (this.status[slot][0] !== VIRTIO_BLK_S_OK) run.errors++
          run.latency.record((now - this.submitted[slot]) * 1e6)
        }
        this.freed[freed++] = slot
      }
      const batch = run.plan.submitBatch
      for (let i = 0; i < freed && run.takeIo(); i++) {
        this.submit(this.freed[i])
        if (this.batchLen >= batch) this.publish()
      }
      this.publish()
    } catch (err) {
      run.fail(new VhostUserClientError('EFRONTEND_PROTOCOL', `queue ${this.index}: ${(err as Error).message}`, { cause: err }))
      return
    }
    if (this.inFlight === 0) run.queueIdle()
  }

  onClose(reason: Error): void {
    this.run.fail(reason)
  }

  /** Releases the queue and the slots' guest RAM. Idempotent. */
  dispose(ram: GuestRam): void {
    if (this.disposed) return
    this.disposed = true
    this.lease.release()
    // Slots still on the ring (a failed run) stay allocated: the back-end may yet write them.
    if (this.inFlight > 0) return
    for (const gpa of this.slotGpa) ram.release(gpa, this.slotBytes)
  }

  private submit(slot: number): void {
    const sector = this.nextSector()
    const h = this.header[slot]
    h.setUint32(8, sector % TWO_POW_32, true)
    h.setUint32(12, Math.floor(sector / TWO_POW_32), true)
    this.status[slot][0] = STATUS_NOT_WRITTEN
    const head = this.driver.addChain(this.segs[slot], this.run.plan.indirect)
    // INVARIANT: iodepth chains fit the ring (checked in the constructor), so head >= 0.
    this.slotOfHead[head] = slot
    this.batch[this.batchLen++] = slot
    this.inFlight++
  }

  /** One avail.idx publish for the batch, one kick if the back-end wants it. */
  private publish(): void {
    if (this.batchLen === 0) return
    const t = performance.now()
    for (let i = 0; i < this.batchLen; i++) this.submitted[this.batch[i]] = t
    this.batchLen = 0
    this.driver.publishAvail()
    if (this.driver.needsKick()) {
      this.lease.kick()
      if (this.run.measuring) this.run.kicks++
    }
  }

  private nextSector(): number {
    const plan = this.run.plan
    let block: number
    if (plan.random) {
      let x = this.rng
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      this.rng = x
      block = Math.floor(((x >>> 0) / TWO_POW_32) * plan.regionBlocks)
    } else {
      block = this.cursor
      this.cursor = block + 1 === plan.regionBlocks ? 0 : block + 1
    }
    return this.regionStart + block * this.sectorsPerIo
  }
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a
}
