/**
 * TestDisk: a block driver for tests, implementing mq `Operations` over a plain Uint8Array.
 *
 * Owns a byte store, the choice of when requests end (inline inside `queueRq`, on a microtask, on
 * a timer, or when the test says so), fault injection and a record of what mq asked of it. It is
 * the test double of the real drivers in `src/disks` (MemDisk, FileDisk): it serves the same
 * operations through the request's segment and range arrays, but allocates freely and favours
 * being easy to observe. It knows nothing of virtio.
 */
import { BlkStatus, ReqOp, SECTOR_SIZE, MAX_SERIAL_BYTES } from '../../src/mq/index.js'
import type { GenDisk, HwQueue, Operations, Request } from '../../src/mq/index.js'

/** When a request accepted by `queueRq` ends. */
export type Completion =
  /** Inside `queueRq`, before it returns (like null_blk with irqmode=none, the Linux docs' example driver). */
  | 'inline'
  /** On a microtask after `queueRq` returned. */
  | 'microtask'
  /** On a `setTimeout(timerMs)` (fake timers advance it). */
  | 'timer'
  /** Held until the test calls `release()`. */
  | 'manual'

/** Options of a {@link TestDisk}. */
export interface TestDiskOptions {
  /** Size of the byte store (the disks served should not be larger). */
  size: number
  /** When requests end (default 'inline'). */
  completion?: Completion
  /** Delay of 'timer' completions, ms (default 1). */
  timerMs?: number
  /** Finish with `rq.end()` (default) or through mq's completion batch with `rq.complete()`. */
  endVia?: 'end' | 'complete'
}

/** One `queueRq` call as the driver saw it. */
export interface QueueRqCall {
  hwq: number
  tag: number
  generation: number
  op: number
  sector: number
  sectors: number
  disk: GenDisk | null
  isLast: boolean
  /** What `queueRq` returned. */
  returned: BlkStatus
}

/** Per-request driver data (the PDU), attached once in `initRequest`. */
interface TestPdu {
  /** Status to end with instead of serving the request, or -1 to serve it. */
  failWith: number
}

/** A request the driver holds, with the generation it was accepted at. */
interface Held {
  rq: Request
  generation: number
}

/** A test block driver over a Uint8Array; see the module header. */
export class TestDisk implements Operations {
  /** The byte store: sector `s` lives at byte `s * 512`. */
  readonly data: Uint8Array
  /** When accepted requests end; may be changed between requests. */
  completion: Completion
  /** Delay of 'timer' completions, ms. */
  timerMs: number
  /** How requests are finished. */
  endVia: 'end' | 'complete'
  /** Every `queueRq` call, in order. */
  readonly calls: QueueRqCall[] = []
  /** Number of `commitRqs` calls. */
  commits = 0
  /** Number of `complete` calls (from mq's completion batch). */
  completes = 0
  /** Number of flushes served. */
  flushes = 0
  /** Requests handed to `timeout`, in order. */
  readonly timedOut: Request[] = []
  /** What `timeout` answers. */
  timeoutVerdict: 'done' | 'reset-timer' = 'done'
  /** Completions dropped because the request was no longer current (timed out, reused). */
  lateCompletions = 0
  /** Number of preallocated requests seen by `initRequest`. */
  initRequests = 0
  /** Hardware queues seen by `initHctx` / `exitHctx`. */
  readonly hctxInits: HwQueue[] = []
  readonly hctxExits: HwQueue[] = []
  /** Requests held in 'manual' mode, oldest first. */
  private readonly held: Held[] = []
  private refuseCount = 0
  private refuseStatus: BlkStatus = BlkStatus.RESOURCE
  private failCount = 0
  private failStatus: BlkStatus = BlkStatus.IOERR

  /** @param options - see {@link TestDiskOptions} */
  constructor(options: TestDiskOptions) {
    this.data = new Uint8Array(options.size)
    this.completion = options.completion ?? 'inline'
    this.timerMs = options.timerMs ?? 1
    this.endVia = options.endVia ?? 'end'
  }

  /** Make `queueRq` return `status` (default RESOURCE: busy) for the next `count` requests. */
  refuseNext(count: number, status: BlkStatus = BlkStatus.RESOURCE): void {
    this.refuseCount = count
    this.refuseStatus = status
  }

  /** Accept the next `count` requests but end them with `status` instead of serving them. */
  failNext(count: number, status: BlkStatus = BlkStatus.IOERR): void {
    this.failCount = count
    this.failStatus = status
  }

  /** Number of requests held in 'manual' mode. */
  get pending(): number {
    return this.held.length
  }

  /** The requests held in 'manual' mode, oldest first. */
  heldRequests(): Request[] {
    return this.held.map((h) => h.rq)
  }

  /** Finish up to `count` held requests (default all), oldest first; returns how many. */
  release(count = this.held.length): number {
    const batch = this.held.splice(0, count)
    for (const h of batch) this.finish(h.rq, h.generation)
    return batch.length
  }

  /** Give up to `count` held requests (default all) back to mq with `rq.requeue()`, oldest first. */
  requeueHeld(count = this.held.length): number {
    const batch = this.held.splice(0, count)
    for (const h of batch) h.rq.requeue()
    return batch.length
  }

  /** Attach the PDU. */
  initRequest(rq: Request): void {
    const pdu: TestPdu = { failWith: -1 }
    rq.pdu = pdu
    this.initRequests++
  }

  initHctx(hwq: HwQueue): void {
    this.hctxInits.push(hwq)
  }

  exitHctx(hwq: HwQueue): void {
    this.hctxExits.push(hwq)
  }

  queueRq(rq: Request, isLast: boolean): BlkStatus {
    const returned = this.accept(rq)
    this.calls.push({
      hwq: rq.hwq.index, tag: rq.tag, generation: rq.generation, op: rq.op, sector: rq.sector,
      sectors: rq.sectors, disk: rq.disk, isLast, returned,
    })
    if (returned !== BlkStatus.OK) return returned
    const generation = rq.generation
    switch (this.completion) {
      case 'inline':
        this.finish(rq, generation)
        break
      case 'microtask':
        queueMicrotask(() => this.finish(rq, generation))
        break
      case 'timer':
        setTimeout(() => this.finish(rq, generation), this.timerMs)
        break
      case 'manual':
        this.held.push({ rq, generation })
        break
    }
    return BlkStatus.OK
  }

  commitRqs(): void {
    this.commits++
  }

  complete(rq: Request): void {
    this.completes++
    rq.end(rq.status)
  }

  timeout(rq: Request): 'done' | 'reset-timer' {
    this.timedOut.push(rq)
    if (this.timeoutVerdict === 'done') this.dropHeld(rq)
    return this.timeoutVerdict
  }

  /** Decide what `queueRq` answers, consuming the fault-injection counters. */
  private accept(rq: Request): BlkStatus {
    if (this.refuseCount > 0) {
      this.refuseCount--
      return this.refuseStatus
    }
    const pdu = rq.pdu as TestPdu
    pdu.failWith = -1
    if (this.failCount > 0) {
      this.failCount--
      pdu.failWith = this.failStatus
    }
    return BlkStatus.OK
  }

  /** Serve and end a request, unless it stopped being ours meanwhile (a driver must check). */
  private finish(rq: Request, generation: number): void {
    if (!rq.isCurrent(generation)) {
      this.lateCompletions++
      return
    }
    const failWith = (rq.pdu as TestPdu).failWith
    const status = failWith >= 0 ? failWith as BlkStatus : this.serve(rq)
    if (this.endVia === 'complete') rq.complete(status, generation)
    else rq.end(status, generation)
  }

  private dropHeld(rq: Request): void {
    const i = this.held.findIndex((h) => h.rq === rq)
    if (i >= 0) this.held.splice(i, 1)
  }

  /** Do the I/O; returns its status. */
  private serve(rq: Request): BlkStatus {
    const disk = rq.disk
    if (disk === null) return BlkStatus.IOERR
    switch (rq.op) {
      case ReqOp.Read:
      case ReqOp.Write:
        return this.readWrite(rq, disk)
      case ReqOp.Flush:
        this.flushes++
        return BlkStatus.OK
      case ReqOp.Discard:
        if (disk.discard === null) return BlkStatus.NOTSUPP
        return this.zeroRanges(rq, disk)
      case ReqOp.WriteZeroes:
        if (disk.writeZeroes === null) return BlkStatus.NOTSUPP
        return this.zeroRanges(rq, disk)
      case ReqOp.GetId:
        return this.getId(rq, disk)
      default:
        return BlkStatus.NOTSUPP
    }
  }

  private inRange(disk: GenDisk, sector: number, sectors: number): boolean {
    return sector + sectors <= disk.capacitySectors && (sector + sectors) * SECTOR_SIZE <= this.data.length
  }

  private readWrite(rq: Request, disk: GenDisk): BlkStatus {
    const isWrite = rq.op === ReqOp.Write
    if (isWrite && disk.readOnly) return BlkStatus.PROTECTION
    if (!this.inRange(disk, rq.sector, rq.sectors)) return BlkStatus.IOERR
    let total = 0
    for (let i = 0; i < rq.nrSegments; i++) total += rq.segLength[i]
    if (total !== rq.sectors * SECTOR_SIZE) return BlkStatus.IOERR
    let pos = rq.sector * SECTOR_SIZE
    for (let i = 0; i < rq.nrSegments; i++) {
      const seg = rq.segBuffer[i].subarray(rq.segOffset[i], rq.segOffset[i] + rq.segLength[i])
      if (isWrite) this.data.set(seg, pos)
      else seg.set(this.data.subarray(pos, pos + seg.length))
      pos += seg.length
    }
    if (!isWrite) rq.bytesDone = total
    return BlkStatus.OK
  }

  private zeroRanges(rq: Request, disk: GenDisk): BlkStatus {
    if (disk.readOnly) return BlkStatus.PROTECTION
    for (let i = 0; i < rq.nrRanges; i++) {
      if (!this.inRange(disk, rq.rangeSector[i], rq.rangeSectors[i])) return BlkStatus.IOERR
    }
    for (let i = 0; i < rq.nrRanges; i++) {
      const start = rq.rangeSector[i] * SECTOR_SIZE
      this.data.fill(0, start, start + rq.rangeSectors[i] * SECTOR_SIZE)
    }
    return BlkStatus.OK
  }

  /** The serial, zero-padded to 20 bytes (no terminator when it fills all 20: virtio 1.2 §5.2.6). */
  private getId(rq: Request, disk: GenDisk): BlkStatus {
    const id = new Uint8Array(MAX_SERIAL_BYTES)
    new TextEncoder().encodeInto(disk.serial, id)
    let done = 0
    for (let i = 0; i < rq.nrSegments && done < id.length; i++) {
      const n = Math.min(rq.segLength[i], id.length - done)
      rq.segBuffer[i].set(id.subarray(done, done + n), rq.segOffset[i])
      done += n
    }
    rq.bytesDone = done
    return BlkStatus.OK
  }
}
