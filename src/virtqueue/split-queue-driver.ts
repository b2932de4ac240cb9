/**
 * SplitQueueDriver: the driver side of a split virtqueue (virtio 1.2 §2.7.13, §2.7.14): the half that a guest's
 * virtio driver, our userspace frontend, and the tests play against SplitQueue.
 *
 * Owns: ring initialisation, the free-descriptor list, an optional pool of indirect tables, making chains available,
 * kick decisions, reaping used elements, and raw writers for hostile tests. The bookkeeping of which descriptors belong
 * to which chain lives in JS arrays, not in the ring, so a device under test cannot corrupt it.
 * Does not own: guest memory (guest-memory.ts) or buffer allocation (callers pass guest-physical segments).
 *
 * Memory ordering follows split-queue.ts: descriptors and avail.ring[] are plain stores made visible by the
 * Atomics.store of avail.idx (virtio 1.2 §2.7.13.3.1); needsKick loads used.flags / avail_event after that store
 * (§2.7.13.4.1); reapUsed reads a used element only after the Atomics.load of used.idx that exposed it.
 */
import { VirtqueueError } from './errors.js'
import type { GuestMemory } from './guest-memory.js'
import {
  AVAIL_FLAGS,
  AVAIL_IDX,
  AVAIL_RING,
  DESC_SIZE,
  MAX_INDIRECT_ENTRIES,
  USED_FLAGS,
  USED_IDX,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  availEventIndex,
  usedEventIndex,
  vringNeedEvent,
  writeDescriptor,
} from './layout.js'
import { mapRing, type SplitQueueConfig } from './ring-views.js'

/** One buffer element of a chain, as the driver describes it. */
export interface DriverSegment {
  /** Guest-physical address of the buffer. */
  gpa: number
  /** Length in bytes (0..2^32-1). */
  len: number
  /** Device-writable (otherwise device-readable). */
  writable: boolean
}

/** Ring placement plus an optional pool of guest memory for indirect tables. */
export interface SplitQueueDriverConfig extends SplitQueueConfig {
  /** Guest-physical start of the memory the driver may use for indirect tables (16-byte aligned). */
  indirectGpa?: number
  /** Bytes of that memory; it is cut into tables of `indirectEntries` descriptors. */
  indirectBytes?: number
  /** Descriptors per indirect table (default and maximum: the queue size, virtio 1.2 §2.7.5.3.1). */
  indirectEntries?: number
}

const NO_SLOT = -1

/** Driver side of one split virtqueue over guest memory. */
export class SplitQueueDriver {
  /** Queue size. */
  readonly size: number
  /** Whether VIRTIO_F_RING_EVENT_IDX is in use. */
  readonly eventIdx: boolean
  /** Length of the element returned by the last successful reapUsed(). */
  lastUsedLen = 0

  readonly #mem: GuestMemory
  readonly #mask: number
  readonly #desc: DataView
  readonly #avail: Uint16Array
  readonly #used: Uint16Array
  readonly #usedElems: Uint32Array
  readonly #usedEvent: number
  readonly #availEvent: number
  /** Free descriptor indices (a stack). */
  readonly #free: Uint16Array
  #numFree: number
  /** Chain links as we wrote them, per descriptor. */
  readonly #link: Uint16Array
  /** Per head: descriptors the chain occupies in the main table (0 = not in flight). */
  readonly #chainLen: Uint32Array
  /** Per head: indirect slot, or NO_SLOT. */
  readonly #slotOf: Int32Array
  readonly #hasPool: boolean
  readonly #poolGpa: number
  readonly #slotEntries: number
  readonly #freeSlots: number[]
  readonly #table: DataView
  readonly #tableBytes: Uint8Array
  #availShadow = 0
  #availPublished = 0
  #kickOld = 0
  #lastUsed = 0

  /**
   * Initialises the three ring areas (zeroes them), a free descriptor list, and an optional indirect-table pool
   * (indirectGpa/indirectBytes: memory the driver may use for indirect tables, each up to size*16 bytes).
   * Throws VirtqueueError (EVQ_BAD_RING, EVQ_RING_OUTSIDE_MEMORY, EVQ_BAD_ARGUMENT for a bad pool).
   */
  constructor(mem: GuestMemory, cfg: SplitQueueDriverConfig) {
    const views = mapRing(mem, cfg)
    const size = cfg.size
    this.#mem = mem
    this.size = size
    this.eventIdx = cfg.eventIdx
    this.#mask = size - 1
    this.#desc = views.desc
    this.#avail = views.avail
    this.#used = views.used
    this.#usedElems = views.usedElems
    this.#usedEvent = usedEventIndex(size)
    this.#availEvent = availEventIndex(size)
    // virtio 1.2 §2.7.10: the driver MUST initialise used.flags to 0; the rest starts at 0 too (§2.7.6, §2.7.8).
    views.descBytes.fill(0)
    this.#avail.fill(0)
    this.#used.fill(0)

    this.#free = new Uint16Array(size)
    for (let i = 0; i < size; i++) this.#free[i] = size - 1 - i // pops 0, 1, 2, ...
    this.#numFree = size
    this.#link = new Uint16Array(size)
    this.#chainLen = new Uint32Array(size)
    this.#slotOf = new Int32Array(size).fill(NO_SLOT)

    const entries = cfg.indirectEntries ?? size
    const pool = cfg.indirectBytes ?? 0
    this.#poolGpa = cfg.indirectGpa ?? 0
    this.#slotEntries = entries
    this.#freeSlots = []
    this.#hasPool = cfg.indirectGpa !== undefined || cfg.indirectBytes !== undefined
    if (this.#hasPool) {
      const slotBytes = entries * DESC_SIZE
      const slots = Math.floor(pool / slotBytes)
      const ctx = { indirectGpa: cfg.indirectGpa, indirectBytes: cfg.indirectBytes, indirectEntries: entries }
      if (!Number.isInteger(entries) || entries < 1 || entries > Math.max(size, MAX_INDIRECT_ENTRIES)) {
        throw new VirtqueueError('EVQ_BAD_ARGUMENT', `indirect tables of ${entries} entries in a queue of ${size}`, ctx)
      }
      if (!Number.isSafeInteger(this.#poolGpa) || this.#poolGpa % DESC_SIZE !== 0 || !Number.isSafeInteger(pool)) {
        throw new VirtqueueError('EVQ_BAD_ARGUMENT', 'indirect pool must be a 16-aligned guest range', ctx)
      }
      if (slots < 1 || !mem.contains(this.#poolGpa, slots * slotBytes)) {
        throw new VirtqueueError('EVQ_BAD_ARGUMENT', 'indirect pool is empty or not in guest memory', ctx)
      }
      for (let s = slots - 1; s >= 0; s--) this.#freeSlots.push(s)
    }
    this.#tableBytes = new Uint8Array(entries * DESC_SIZE)
    this.#table = new DataView(this.#tableBytes.buffer)
  }

  /** Free descriptors in the main table. */
  numFree(): number {
    return this.#numFree
  }

  /** Free indirect tables in the pool. */
  numFreeIndirect(): number {
    return this.#freeSlots.length
  }

  /** avail.idx as last published. */
  get availIdx(): number {
    return this.#availPublished
  }

  /** Index of the next used element this side will reap. */
  get lastUsedIdx(): number {
    return this.#lastUsed
  }

  /** used.idx as currently in guest memory. */
  readUsedIdx(): number {
    return Atomics.load(this.#used, USED_IDX)
  }

  /** Whether `head` is a chain this driver made available and has not reaped yet. */
  isInFlight(head: number): boolean {
    return head >= 0 && head < this.size && this.#chainLen[head] !== 0
  }

  /**
   * Starts both free-running indices at `base` (a restarted ring, or wraparound tests): avail.idx, used.idx and
   * used_event in guest memory and this side's cursors. The device side sets nextAvail = base and
   * nextUsed = readUsedIdx(). Throws EVQ_BAD_ARGUMENT while chains are in flight or unpublished.
   */
  setBase(base: number): void {
    if (this.#numFree !== this.size || this.#availShadow !== this.#availPublished) {
      throw new VirtqueueError('EVQ_BAD_ARGUMENT', 'setBase with chains in flight', { base })
    }
    const idx = base & 0xffff
    Atomics.store(this.#avail, AVAIL_IDX, idx)
    Atomics.store(this.#avail, this.#usedEvent, idx)
    Atomics.store(this.#used, USED_IDX, idx)
    this.#availShadow = idx
    this.#availPublished = idx
    this.#kickOld = idx
    this.#lastUsed = idx
  }

  /**
   * Adds a chain (readables first) as direct descriptors, or as one indirect descriptor when `indirect` is true.
   * Makes it available (ring entry) but does not publish avail.idx. Returns the head, or -1 when descriptors or
   * indirect space are short. Throws EVQ_BAD_ARGUMENT for a malformed chain or an indirect chain without a pool.
   */
  addChain(segs: readonly DriverSegment[], indirect = false): number {
    this.#checkChain(segs, indirect)
    const n = segs.length
    let head: number
    if (indirect) {
      if (this.#numFree < 1 || this.#freeSlots.length === 0) return -1
      const slot = this.#freeSlots.pop() as number
      for (let i = 0; i < n; i++) {
        const s = segs[i]
        const last = i === n - 1
        const flags = (s.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT)
        writeDescriptor(this.#table, i * DESC_SIZE, s.gpa, s.len, flags, last ? 0 : i + 1)
      }
      const tableGpa = this.#poolGpa + slot * this.#slotEntries * DESC_SIZE
      this.#mem.write(tableGpa, this.#tableBytes, 0, n * DESC_SIZE)
      head = this.#allocDesc()
      writeDescriptor(this.#desc, head * DESC_SIZE, tableGpa, n * DESC_SIZE, VIRTQ_DESC_F_INDIRECT, 0)
      this.#chainLen[head] = 1
      this.#slotOf[head] = slot
    } else {
      if (this.#numFree < n) return -1
      head = this.#allocDesc()
      let d = head
      for (let i = 0; i < n; i++) {
        const s = segs[i]
        const last = i === n - 1
        const next = last ? 0 : this.#allocDesc()
        const flags = (s.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT)
        writeDescriptor(this.#desc, d * DESC_SIZE, s.gpa, s.len, flags, next)
        this.#link[d] = next
        d = next
      }
      this.#chainLen[head] = n
      this.#slotOf[head] = NO_SLOT
    }
    this.#avail[AVAIL_RING + (this.#availShadow & this.#mask)] = head
    this.#availShadow = (this.#availShadow + 1) & 0xffff
    return head
  }

  /** Publishes avail.idx (Atomics.store) for everything added. */
  publishAvail(): void {
    Atomics.store(this.#avail, AVAIL_IDX, this.#availShadow)
    this.#availPublished = this.#availShadow
  }

  /**
   * After publishAvail(): should the device be kicked? Records the published index, so a second call without new
   * chains says no. NO_NOTIFY flag, or with EVENT_IDX avail_event with the wrap-safe rule (virtio 1.2 §2.7.10).
   */
  needsKick(): boolean {
    const newIdx = this.#availPublished
    const oldIdx = this.#kickOld
    this.#kickOld = newIdx
    if (newIdx === oldIdx) return false
    if (this.eventIdx) return vringNeedEvent(Atomics.load(this.#used, this.#availEvent), newIdx, oldIdx)
    return (Atomics.load(this.#used, USED_FLAGS) & VIRTQ_USED_F_NO_NOTIFY) === 0
  }

  /**
   * Next used element: returns its id (head) and sets lastUsedLen, or -1 when none. Frees the chain's descriptors.
   * With EVENT_IDX, writes used_event = the new last-seen used index (ask for an interrupt on the next completion).
   * Throws EVQ_BAD_USED if the device published an impossible element (a test tool wants to hear of it).
   */
  reapUsed(): number {
    const idx = Atomics.load(this.#used, USED_IDX)
    const ahead = (idx - this.#lastUsed) & 0xffff
    if (ahead === 0) return -1
    if (ahead > this.size) {
      throw new VirtqueueError('EVQ_BAD_USED', `used.idx ${idx} is ${ahead} ahead of ${this.#lastUsed}`, { idx })
    }
    const e = 1 + 2 * (this.#lastUsed & this.#mask)
    const id = this.#usedElems[e]
    const len = this.#usedElems[e + 1]
    if (!this.isInFlight(id)) {
      throw new VirtqueueError('EVQ_BAD_USED', `used element ${this.#lastUsed} names head ${id}, not in flight`, {
        id,
        len,
      })
    }
    this.#freeChain(id)
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff
    if (this.eventIdx) Atomics.store(this.#avail, this.#usedEvent, this.#lastUsed)
    this.lastUsedLen = len
    return id
  }

  /** VIRTQ_AVAIL_F_NO_INTERRUPT on/off (without EVENT_IDX; virtio 1.2 §2.7.7.1). */
  setInterruptSuppressed(on: boolean): void {
    Atomics.store(this.#avail, AVAIL_FLAGS, on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0)
  }

  /** Raw: writes descriptor i of the main table (addr may be any u64 below 2^64, precise below 2^53). */
  writeDescriptor(i: number, addr: number, len: number, flags: number, next: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.size)) {
      throw new VirtqueueError('EVQ_BAD_ARGUMENT', `descriptor ${i} outside a table of ${this.size}`, { i })
    }
    writeDescriptor(this.#desc, i * DESC_SIZE, addr, len, flags, next)
  }

  /** Raw: puts `head` (any u16) in the next avail ring slot, without bookkeeping; publish with publishAvail(). */
  pushAvailRaw(head: number): void {
    this.#avail[AVAIL_RING + (this.#availShadow & this.#mask)] = head
    this.#availShadow = (this.#availShadow + 1) & 0xffff
  }

  /** Raw: stores avail.idx = idx (Atomics.store) and moves this side's cursor there. */
  setAvailIdx(idx: number): void {
    this.#availShadow = idx & 0xffff
    this.publishAvail()
  }

  #allocDesc(): number {
    // INVARIANT: callers checked #numFree beforehand.
    return this.#free[--this.#numFree]
  }

  #freeChain(head: number): void {
    let d = head
    for (let i = this.#chainLen[head]; i > 0; i--) {
      this.#free[this.#numFree++] = d
      d = this.#link[d]
    }
    this.#chainLen[head] = 0
    const slot = this.#slotOf[head]
    if (slot !== NO_SLOT) {
      this.#freeSlots.push(slot)
      this.#slotOf[head] = NO_SLOT
    }
  }

  #checkChain(segs: readonly DriverSegment[], indirect: boolean): void {
    const limit = indirect ? this.#slotEntries : this.size
    if (segs.length < 1 || segs.length > limit) {
      throw new VirtqueueError('EVQ_BAD_ARGUMENT', `a chain of ${segs.length} segments (1..${limit} allowed)`, {
        count: segs.length,
      })
    }
    if (indirect && !this.#hasPool) {
      throw new VirtqueueError('EVQ_BAD_ARGUMENT', 'indirect chain but no indirect pool configured')
    }
    let seenWritable = false
    for (const s of segs) {
      if (!(Number.isSafeInteger(s.gpa) && s.gpa >= 0 && Number.isInteger(s.len) && s.len >= 0 && s.len <= 0xffffffff)) {
        throw new VirtqueueError('EVQ_BAD_ARGUMENT', `segment {gpa ${s.gpa}, len ${s.len}} is malformed`, { ...s })
      }
      // virtio 1.2 §2.7.4.2: device-writable elements after all device-readable ones.
      if (s.writable) seenWritable = true
      else if (seenWritable) throw new VirtqueueError('EVQ_BAD_ARGUMENT', 'readable segment after a writable one')
    }
  }
}
