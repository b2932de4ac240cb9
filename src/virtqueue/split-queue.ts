/**
 * SplitQueue: the device side of one split virtqueue (virtio 1.2 §2.7): pops heads from the available ring, walks
 * descriptor chains (direct and indirect) into DescChain segments, pushes and publishes used elements, and implements
 * both notification-suppression schemes.
 *
 * Owns: the device's ring cursors (nextAvail, nextUsed), the broken state, the descriptor walker and its checks.
 * Does not own: what a chain means (blk), kick/call eventfds (vhost), guest memory (guest-memory.ts).
 *
 * Memory ordering (the project's decision, made here once). The driver reads and writes the rings concurrently from
 * another CPU. Ring index loads and stores (avail.idx, used.idx, used_event, avail_event, avail.flags, used.flags) use
 * Atomics.load / Atomics.store on Uint16Array views. That is legal on non-shared ArrayBuffers too; V8 never hoists
 * atomics out of loops nor reorders plain accesses across them, and emits sequentially consistent instructions (x86-64:
 * plain load, xchg for the store; arm64: ldar / stlr). Descriptors and ring entries use plain typed-array / DataView
 * access, ordered by the atomics around them:
 *  - popAvail reads avail.ring[] and the descriptors only after the Atomics.load of avail.idx that exposed them
 *    (acquire; virtio 1.2 §2.7.13.3: the idx update exposes the descriptors).
 *  - pushUsed writes the used element with plain stores before publishUsed's Atomics.store of used.idx (release;
 *    virtio 1.2 §2.7.8.2: the device MUST set len prior to updating the used idx).
 *  - after publishing, needsNotification loads used_event / avail.flags; enableNotification stores avail_event /
 *    used.flags and then re-loads avail.idx. A seq-cst store followed by a seq-cst load gives the store→load ordering
 *    both checks need (the device-side twin of §2.7.13.4.1), so no notification is lost.
 * Typed arrays are host-endian: ring-views.ts asserts a little-endian host once at module load.
 *
 * Hot path: popAvail, walk, pushUsed, publishUsed, needsNotification, enable/disableNotification allocate nothing.
 * EVENT_IDX behaviour is chosen once, in the constructor, by assigning methods (STYLE.md §4), not by a branch per call.
 */
import type { DescChain } from './desc-chain.js'
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
} from './layout.js'
import { mapRing, type SplitQueueConfig } from './ring-views.js'

export type { SplitQueueConfig } from './ring-views.js'

/** Result codes of SplitQueue.walk. Guest mistakes are numbers, never exceptions. */
export const ChainError = {
  OK: 0,
  /** Chain longer than the queue size (or than its indirect table): a loop (virtio 1.2 §2.7.5.2, §2.7.5.3.1). */
  LOOP: 1,
  /** Buffer or indirect table not in guest memory, or its address/end at or beyond 2^53. */
  OUT_OF_RANGE: 2,
  /** Indirect table length 0, not a multiple of 16, more than size entries, or INDIRECT together with NEXT. */
  BAD_INDIRECT: 3,
  /** INDIRECT inside an indirect table (virtio 1.2 §2.7.5.3.1). */
  NESTED_INDIRECT: 4,
  /** A device-readable descriptor after a device-writable one (virtio 1.2 §2.7.4.2). */
  READ_AFTER_WRITE: 5,
  /** More segments than chain.capacity (virtio 1.2 §2.7.4.1 lets the device limit descriptors per chain). */
  TOO_MANY_SEGMENTS: 6,
  /** `next` (or the head) outside the table being walked. */
  BAD_NEXT: 7,
  /** Total length > 2^32 bytes (virtio 1.2 §2.7.5.2). */
  TOO_LARGE: 8,
} as const

/** One of the ChainError values. */
export type ChainErrorCode = (typeof ChainError)[keyof typeof ChainError]

/** Descriptor addresses are u64; the high word must stay below 2^21 for the address to be below 2^53. */
const ADDR_HI_LIMIT = 0x200000
const TWO_POW_32 = 4294967296

/**
 * Device side of one split virtqueue over mapped guest memory.
 *
 * Starting: set nextAvail (SET_VRING_BASE) and nextUsed = readUsedIdx(), then make one pass over the ring as a kick
 * would, ending with enableNotification(): with EVENT_IDX that is what first writes avail_event, and the driver may
 * have queued chains before the queue started. Stop the queue before its GuestMemory is disposed: the ring views
 * point into that memory.
 */
export class SplitQueue {
  /** Queue size (a power of two). */
  readonly size: number
  /** Whether VIRTIO_F_RING_EVENT_IDX was negotiated. */
  readonly eventIdx: boolean
  /** True once the driver corrupted the ring; popAvail then returns -1 until the queue is rebuilt. */
  broken = false
  /** Why the queue broke, naming the driver's mistake (empty while not broken). */
  brokenReason = ''

  /**
   * After publishUsed(): should the driver be interrupted? Records the used index it decided on, so a second call
   * without new used elements returns false. With EVENT_IDX: the wrap-safe vring_need_event(used_event, new, old)
   * rule, where old is the used index at the previous call (virtio 1.2 §2.7.7.2; the first call after nextUsed is set
   * always says yes); else !(avail.flags & VIRTQ_AVAIL_F_NO_INTERRUPT).
   */
  readonly needsNotification: () => boolean
  /** Ask the driver not to kick: VIRTQ_USED_F_NO_NOTIFY, or with EVENT_IDX nothing to do (avail_event left behind). */
  readonly disableNotification: () => void
  /**
   * Re-enable kicks (clear NO_NOTIFY, or with EVENT_IDX write avail_event = nextAvail), then re-check the avail ring
   * (store→load order): returns true if more heads arrived meanwhile (the caller loops).
   */
  readonly enableNotification: () => boolean

  readonly #mem: GuestMemory
  readonly #mask: number
  readonly #desc: DataView
  readonly #avail: Uint16Array
  readonly #used: Uint16Array
  readonly #usedElems: Uint32Array
  readonly #usedEvent: number
  readonly #availEvent: number
  #nextAvail = 0
  /** Last avail.idx loaded; heads in [nextAvail, availIdx) are known to be available without another load. */
  #availIdx = 0
  #nextUsed = 0
  #publishedUsed = 0
  #signalledUsed = 0
  #signalledValid = false
  /** Largest indirect table accepted: the queue size, or MAX_INDIRECT_ENTRIES when that is larger. */
  readonly #maxIndirect: number
  /** Copy of an indirect table that crosses a region boundary; allocated on first need (#maxIndirect * 16 bytes). */
  #scratch: DataView | null = null
  #scratchBytes: Uint8Array | null = null

  /**
   * Throws VirtqueueError('EVQ_BAD_RING') for size 0 / not a power of 2 / > 32768, misaligned areas (desc 16, avail 2,
   * used 4), or an area not wholly inside one window (EVQ_RING_OUTSIDE_MEMORY). Builds the typed-array views once.
   * Writes nothing to guest memory.
   */
  constructor(mem: GuestMemory, cfg: SplitQueueConfig) {
    const views = mapRing(mem, cfg)
    this.#mem = mem
    this.size = cfg.size
    this.eventIdx = cfg.eventIdx
    this.#mask = cfg.size - 1
    this.#maxIndirect = Math.max(cfg.size, MAX_INDIRECT_ENTRIES)
    this.#desc = views.desc
    this.#avail = views.avail
    this.#used = views.used
    this.#usedElems = views.usedElems
    this.#usedEvent = usedEventIndex(cfg.size)
    this.#availEvent = availEventIndex(cfg.size)
    if (cfg.eventIdx) {
      this.needsNotification = this.#needsNotificationEventIdx
      this.disableNotification = this.#disableNotificationEventIdx
      this.enableNotification = this.#enableNotificationEventIdx
    } else {
      this.needsNotification = this.#needsNotificationFlags
      this.disableNotification = this.#disableNotificationFlags
      this.enableNotification = this.#enableNotificationFlags
    }
  }

  /** Next avail index to consume: 16-bit, free-running (wraps at 65536); set by SET_VRING_BASE. */
  get nextAvail(): number {
    return this.#nextAvail
  }

  set nextAvail(idx: number) {
    this.#nextAvail = idx & 0xffff
    this.#availIdx = this.#nextAvail // forget what was known to be available: the next pop re-loads avail.idx
  }

  /**
   * Next used index to write: 16-bit, free-running. Setting it (from readUsedIdx() when the queue starts) also
   * forgets the notification record, so the next needsNotification() says yes.
   */
  get nextUsed(): number {
    return this.#nextUsed
  }

  set nextUsed(idx: number) {
    this.#nextUsed = idx & 0xffff
    this.#publishedUsed = this.#nextUsed
    this.#signalledValid = false
  }

  /** used.idx as currently in guest memory. */
  readUsedIdx(): number {
    return Atomics.load(this.#used, USED_IDX)
  }

  /** Marks the queue broken (popAvail returns -1 from now on); the first reason is kept. */
  markBroken(reason: string): void {
    if (this.broken) return
    this.broken = true
    this.brokenReason = reason
  }

  /**
   * Next head from the avail ring, or -1 when empty or broken. avail.idx - nextAvail > size, or a head >= size, marks
   * the queue broken and returns -1. Loads avail.idx with Atomics.load, caching the last value so a burst of pops does
   * one atomic load.
   */
  popAvail(): number {
    if (this.broken) return -1
    if (this.#nextAvail === this.#availIdx && this.pending() === 0) return -1
    const head = this.#avail[AVAIL_RING + (this.#nextAvail & this.#mask)]
    if (head >= this.size) {
      this.markBroken(`avail.ring[${this.#nextAvail & this.#mask}] holds head ${head}, outside a queue of ${this.size}`)
      return -1
    }
    this.#nextAvail = (this.#nextAvail + 1) & 0xffff
    return head
  }

  /** Gives back the head returned by the last popAvail (backpressure: it stays in the ring for the next pass). */
  undoPop(): void {
    this.#nextAvail = (this.#nextAvail - 1) & 0xffff
  }

  /** Number of heads available now (re-reads avail.idx); 0 when broken. */
  pending(): number {
    if (this.broken) return 0
    const idx = Atomics.load(this.#avail, AVAIL_IDX)
    const n = (idx - this.#nextAvail) & 0xffff
    // virtio 1.2 §2.7.6 / §2.7.6.1: avail.idx only increases and at most `size` heads can be outstanding (§2.7.13);
    // anything else means the driver scribbled on the ring.
    if (n > this.size) {
      this.markBroken(`avail.idx ${idx} is ${n} ahead of next_avail ${this.#nextAvail} in a queue of ${this.size}`)
      return 0
    }
    this.#availIdx = idx
    return n
  }

  /** Whether no head is available now (re-reads avail.idx only when the cached value is exhausted). */
  isEmpty(): boolean {
    return this.#nextAvail === this.#availIdx && this.pending() === 0
  }

  /**
   * Walks the descriptor chain of `head` (direct and indirect; indirect tables may run from one region into a
   * guest-physically adjacent one) into `chain`. Returns a ChainError code; never throws, never marks the queue
   * broken (the caller decides: fail the request or break the queue). Each descriptor field is read once, so a driver
   * rewriting the table meanwhile cannot make the checks and the segments disagree. Zero-length descriptors are
   * accepted and add no segment.
   */
  walk(head: number, chain: DescChain): number {
    chain.reset(head)
    if (!(head >= 0 && head < this.size)) return ChainError.BAD_NEXT
    const mem = this.#mem
    let view = this.#desc
    let base = 0
    let limit = this.size // entries in the table being walked
    let idx = head
    let steps = 0
    let inIndirect = false
    let seenWritable = false
    let total = 0
    for (;;) {
      // virtio 1.2 §2.7.5.2 (no loops) and §2.7.5.3.1 (no chain longer than the queue size): a table of `limit`
      // entries cannot hold a longer loop-free chain.
      if (++steps > limit) return ChainError.LOOP
      // INVARIANT: idx < limit (head checked above, next checked below, indirect tables start at 0), so the
      // descriptor lies inside the view.
      const off = base + idx * DESC_SIZE
      const lo = view.getUint32(off, true)
      const hi = view.getUint32(off + 4, true)
      const len = view.getUint32(off + 8, true)
      const flags = view.getUint16(off + 12, true)
      const next = view.getUint16(off + 14, true)
      if (hi >= ADDR_HI_LIMIT) return ChainError.OUT_OF_RANGE
      const addr = hi * TWO_POW_32 + lo // exact: below 2^53
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // virtio 1.2 §2.7.5.3.1: only one table per descriptor; the driver MUST NOT set INDIRECT together with NEXT.
        // §2.7.5.3.2: the device MUST ignore WRITE on this descriptor, and MUST accept direct descriptors before it.
        if (inIndirect) return ChainError.NESTED_INDIRECT
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) return ChainError.BAD_INDIRECT
        if (len === 0 || len % DESC_SIZE !== 0 || len > this.#maxIndirect * DESC_SIZE) return ChainError.BAD_INDIRECT
        const w = mem.findWindow(addr, len)
        if (w >= 0) {
          const win = mem.windows[w]
          view = win.view
          base = addr - win.gpa
        } else {
          const copy = this.#copyTable(addr, len)
          if (copy === null) return ChainError.OUT_OF_RANGE
          view = copy
          base = 0
        }
        limit = len / DESC_SIZE
        idx = 0
        steps = 0
        inIndirect = true
        continue
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0
      if (writable) seenWritable = true
      else if (seenWritable) return ChainError.READ_AFTER_WRITE // virtio 1.2 §2.7.4.2: readable first
      total += len
      if (total > TWO_POW_32) return ChainError.TOO_LARGE // virtio 1.2 §2.7.5.2: at most 2^32 bytes in total
      if (!mem.translate(addr, len, writable, chain)) {
        return mem.contains(addr, len) ? ChainError.TOO_MANY_SEGMENTS : ChainError.OUT_OF_RANGE
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return ChainError.OK
      if (next >= limit) return ChainError.BAD_NEXT
      idx = next
    }
  }

  /**
   * For a chain that walk() refused: finds the last byte of its final descriptor, if that descriptor is
   * device-writable and inside guest memory, so the request can still be answered with a status byte
   * (a guest that reads a stale status would take a lost write for a success). Follows only the links,
   * with the same bounds as walk(); returns false for anything it cannot follow. Never throws. On
   * success the byte is at `lastWindow`/`lastOffset`.
   */
  locateLastByte(head: number): boolean {
    if (!(head >= 0 && head < this.size)) return false
    const mem = this.#mem
    let view = this.#desc
    let base = 0
    let limit = this.size
    let idx = head
    let steps = 0
    let inIndirect = false
    for (;;) {
      if (++steps > limit) return false
      const off = base + idx * DESC_SIZE
      const hi = view.getUint32(off + 4, true)
      if (hi >= ADDR_HI_LIMIT) return false
      const addr = hi * TWO_POW_32 + view.getUint32(off, true)
      const len = view.getUint32(off + 8, true)
      const flags = view.getUint16(off + 12, true)
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        if (inIndirect || len === 0 || len % DESC_SIZE !== 0 || len > this.#maxIndirect * DESC_SIZE) return false
        const w = mem.findWindow(addr, len)
        if (w < 0) return false
        view = mem.windows[w].view
        base = addr - mem.windows[w].gpa
        limit = len / DESC_SIZE
        idx = 0
        steps = 0
        inIndirect = true
        continue
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) {
        if ((flags & VIRTQ_DESC_F_WRITE) === 0 || len === 0) return false
        const w = mem.findWindow(addr + len - 1, 1)
        if (w < 0) return false
        this.lastWindow = w
        this.lastOffset = addr + len - 1 - mem.windows[w].gpa
        return true
      }
      const next = view.getUint16(off + 14, true)
      if (next >= limit) return false
      idx = next
    }
  }

  /** Where locateLastByte() found the byte: window index and offset in it. */
  lastWindow = -1
  lastOffset = 0

  /** Writes a used element {id: head, len} at nextUsed (not yet visible). */
  pushUsed(head: number, len: number): void {
    const e = 1 + 2 * (this.#nextUsed & this.#mask)
    this.#usedElems[e] = head
    this.#usedElems[e + 1] = len
    this.#nextUsed = (this.#nextUsed + 1) & 0xffff
  }

  /** Makes all pushed elements visible: one Atomics.store of used.idx (release for the element stores before it). */
  publishUsed(): void {
    Atomics.store(this.#used, USED_IDX, this.#nextUsed)
    this.#publishedUsed = this.#nextUsed
  }

  /**
   * A copy of an indirect table that is not inside one window (it runs into a guest-physically adjacent region), or
   * null if part of it is unmapped. Copying also pins the table's contents for the walk. The buffer is allocated on
   * first use only: the case is legal but rare.
   */
  #copyTable(addr: number, len: number): DataView | null {
    if (this.#scratch === null || this.#scratchBytes === null) {
      this.#scratchBytes = new Uint8Array(this.#maxIndirect * DESC_SIZE)
      this.#scratch = new DataView(this.#scratchBytes.buffer)
    }
    return this.#mem.read(addr, this.#scratchBytes, 0, len) ? this.#scratch : null
  }

  #needsNotificationFlags(): boolean {
    const fresh = this.#publishedUsed !== this.#signalledUsed || !this.#signalledValid
    this.#signalledUsed = this.#publishedUsed
    this.#signalledValid = true
    // virtio 1.2 §2.7.7.2 without EVENT_IDX: flags 0 → MUST notify; flags 1 → SHOULD NOT.
    return fresh && (Atomics.load(this.#avail, AVAIL_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0
  }

  #needsNotificationEventIdx(): boolean {
    const newIdx = this.#publishedUsed
    const oldIdx = this.#signalledUsed
    const valid = this.#signalledValid
    this.#signalledUsed = newIdx
    this.#signalledValid = true
    if (!valid) return true
    // virtio 1.2 §2.7.7.2 with EVENT_IDX: MUST notify when the used idx passes used_event.
    return vringNeedEvent(Atomics.load(this.#avail, this.#usedEvent), newIdx, oldIdx)
  }

  #disableNotificationFlags(): void {
    // virtio 1.2 §2.7.10: without EVENT_IDX the device sets used.flags to 0 or 1.
    Atomics.store(this.#used, USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY)
  }

  #disableNotificationEventIdx(): void {
    // avail_event stays where enableNotification put it; once the driver passed it, it does not kick again.
  }

  #enableNotificationFlags(): boolean {
    Atomics.store(this.#used, USED_FLAGS, 0)
    return this.pending() > 0
  }

  #enableNotificationEventIdx(): boolean {
    // virtio 1.2 §2.7.10: kick me when you write the entry at index nextAvail.
    Atomics.store(this.#used, this.#availEvent, this.#nextAvail)
    return this.pending() > 0
  }
}
