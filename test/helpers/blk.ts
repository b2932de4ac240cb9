/**
 * An in-process virtio-blk rig: MockGuestMemory, the driver side of one ring (SplitQueueDriver),
 * and the real BlkDevice/BlkQueue over a real TagSet and a disk driver. Builds virtio-blk chains
 * the way Linux lays them out (header, data, status) or any other way a test wants, runs the
 * device, and reads back statuses, used lengths and data.
 */
import { pino } from 'pino'
import { BlkDevice } from '../../src/blk/device.js'
import { chainCapacityFor, initBlkRequest } from '../../src/blk/request-state.js'
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../src/blk/spec.js'
import { GenDiskBuilder, TagSet, type GenDisk, type Operations } from '../../src/mq/index.js'
import type { DeviceQueue } from '../../src/vhost/device.js'
import { SplitQueue, SplitQueueDriver, descTableBytes, availRingBytes, usedRingBytes } from '../../src/virtqueue/index.js'
import { MockGuestMemory } from './guest-memory.js'

/** One buffer of a chain to build: bytes the device reads, or `inLen` bytes it may write. */
export type Piece = { out: Uint8Array } | { inLen: number }

/** The result of one chain: what the used ring said and what the device wrote. */
export interface Completed {
  usedLen: number
  /** The last byte of the last writable piece (the status), or -1 without writable pieces. */
  status: number
  /** Each writable piece's bytes, in order. */
  ins: Uint8Array[]
}

/** Rig options. */
export interface BlkRigOptions {
  ops: Operations
  capacityBytes?: number
  queueSize?: number
  queueDepth?: number
  readOnly?: boolean
  logicalBlockSize?: number
  serial?: string
  eventIdx?: boolean
  discardMaxSegments?: number
  discardMaxSectors?: number
  maxSegments?: number
}

/** Builds a 16-byte virtio_blk_outhdr. */
export function outHeader(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16)
  const dv = new DataView(h.buffer)
  dv.setUint32(0, type, true)
  dv.setBigUint64(8, BigInt(sector), true)
  return h
}

/** Builds `n` 16-byte discard / write-zeroes segments. */
export function rangeSegments(ranges: Array<{ sector: number | bigint; sectors: number; flags?: number }>): Uint8Array {
  const out = new Uint8Array(16 * ranges.length)
  const dv = new DataView(out.buffer)
  ranges.forEach((r, i) => {
    dv.setBigUint64(16 * i, BigInt(r.sector), true)
    dv.setUint32(16 * i + 8, r.sectors, true)
    dv.setUint32(16 * i + 12, r.flags ?? 0, true)
  })
  return out
}

const RING_GPA = 0x1000
const DATA_GPA = 0x10_0000

/** The rig. */
export class BlkRig {
  readonly mem: MockGuestMemory
  readonly driver: SplitQueueDriver
  readonly device: BlkDevice
  readonly disk: GenDisk
  readonly tagSet: TagSet
  readonly queue: DeviceQueue
  readonly vq: SplitQueue
  notifications = 0
  /** used.idx as the guest saw it at each notification. */
  readonly usedIdxAtNotify: number[] = []
  private next = DATA_GPA
  private readonly pending = new Map<number, Array<{ gpa: number; len: number; writable: boolean }>>()

  constructor(opts: BlkRigOptions) {
    const size = opts.queueSize ?? 64
    const lbs = opts.logicalBlockSize ?? 512
    this.mem = MockGuestMemory.create(64 << 20)
    this.tagSet = new TagSet({
      nrHwQueues: 1,
      queueDepth: opts.queueDepth ?? size,
      ops: opts.ops,
      maxSegments: chainCapacityFor(opts.maxSegments ?? 254),
      maxRanges: 256,
      initRequest: initBlkRequest,
    })
    this.disk = new GenDiskBuilder()
      .name('vda')
      .capacityBytes(opts.capacityBytes ?? 1 << 20)
      .logicalBlockSize(lbs)
      .physicalBlockSize(lbs)
      .readOnly(opts.readOnly ?? false)
      .serial(opts.serial ?? 'test-serial')
      .maxSegments(opts.maxSegments ?? 254)
      .maxSegmentSize(1 << 20)
      .maxSectors(8192)
      .discard({ maxSectors: opts.discardMaxSectors ?? 1 << 20, maxSegments: opts.discardMaxSegments ?? 256, granularitySectors: lbs / 512 })
      .writeZeroes({ maxSectors: 1 << 20, maxSegments: 256, mayUnmap: true })
      .build(this.tagSet)
    this.device = new BlkDevice({ disk: this.disk, tagSet: this.tagSet, numQueues: 1, writeback: true, log: pino({ level: 'silent' }) })
    const descGpa = RING_GPA
    const availGpa = descGpa + descTableBytes(size)
    const usedGpa = (availGpa + availRingBytes(size) + 3) & ~3
    if (usedGpa + usedRingBytes(size) > DATA_GPA) throw new Error('ring too large for the rig')
    const cfg = { size, descGpa, availGpa, usedGpa, eventIdx: opts.eventIdx ?? true }
    this.driver = new SplitQueueDriver(this.mem.memory, { ...cfg, indirectGpa: 32 << 20, indirectBytes: 8 << 20, indirectEntries: 512 })
    this.vq = new SplitQueue(this.mem.memory, cfg)
    this.queue = this.device.startQueue({
      index: 0, vq: this.vq, mem: this.mem.memory, regionFds: [], layout: cfg, kickFd: -1, callFd: -1,
      notify: () => {
        this.notifications++
        this.usedIdxAtNotify.push(this.driver.readUsedIdx())
      },
      fail: (reason) => { throw reason },
    })
  }

  /** Places bytes in guest memory and returns their address. */
  place(data: Uint8Array): number {
    const gpa = this.reserve(data.length)
    this.mem.write(gpa, data)
    return gpa
  }

  /** Reserves `len` bytes (8-aligned) of guest memory, filled with 0xee so unwritten bytes show. */
  reserve(len: number): number {
    const gpa = this.next
    this.next += (len + 7) & ~7
    if (len > 0) this.mem.fill(gpa, len, 0xee)
    return gpa
  }

  /** Makes a chain of pieces available (not kicked). Returns its head. */
  add(pieces: Piece[], indirect = false): number {
    const segs = pieces.map((p) =>
      'out' in p ? { gpa: this.place(p.out), len: p.out.length, writable: false } : { gpa: this.reserve(p.inLen), len: p.inLen, writable: true },
    )
    const head = this.driver.addChain(segs, indirect)
    if (head < 0) throw new Error('ring full')
    this.pending.set(head, segs)
    return head
  }

  /** Publishes and kicks the device. */
  kick(): void {
    this.driver.publishAvail()
    this.queue.kick()
  }

  /** Reaps every used element: head → result. */
  reap(): Map<number, Completed> {
    const done = new Map<number, Completed>()
    let id: number
    while ((id = this.driver.reapUsed()) >= 0) {
      const segs = this.pending.get(id)!
      this.pending.delete(id)
      const ins = segs.filter((s) => s.writable).map((s) => this.mem.read(s.gpa, s.len))
      const lastIn = ins[ins.length - 1]
      done.set(id, { usedLen: this.driver.lastUsedLen, status: lastIn && lastIn.length > 0 ? lastIn[lastIn.length - 1] : -1, ins })
    }
    return done
  }

  /** Adds one chain, kicks, waits a tick (async drivers) and returns its completion. */
  async run(pieces: Piece[], indirect = false): Promise<Completed> {
    const head = this.add(pieces, indirect)
    this.kick()
    for (let i = 0; i < 50 && this.driver.isInFlight(head); i++) await new Promise((r) => setTimeout(r, 1))
    const done = this.reap().get(head)
    if (done === undefined) throw new Error(`chain ${head} was never completed`)
    return done
  }

  /** Linux-style read: header, data (in), status. Returns status and data. */
  async read(sector: number, len: number): Promise<{ status: number; data: Uint8Array; usedLen: number }> {
    const c = await this.run([{ out: outHeader(VIRTIO_BLK_T_IN, sector) }, { inLen: len }, { inLen: 1 }])
    return { status: c.status, data: c.ins[0], usedLen: c.usedLen }
  }

  /** Linux-style write: header, data (out), status. */
  async write(sector: number, data: Uint8Array): Promise<{ status: number; usedLen: number }> {
    const c = await this.run([{ out: outHeader(VIRTIO_BLK_T_OUT, sector) }, { out: data }, { inLen: 1 }])
    return { status: c.status, usedLen: c.usedLen }
  }
}
