/**
 * One virtqueue of the client: turns a list of buffers into a descriptor chain in guest memory,
 * kicks the back-end when the ring asks for it, and completes submissions when the back-end
 * signals the call eventfd.
 *
 * Owns: the queue's kick and call eventfds, the call-fd poller, the in-flight table (head ->
 * submission) and a FIFO backlog for submissions that find the ring or guest memory full (they are
 * placed, in order, as completions free space: never dropped, never reordered).
 * Does not own: the ring layout (SplitQueueDriver), guest memory (GuestRam) or what the buffers
 * mean (blk-request.ts).
 *
 * Batching: submissions made in the same tick are published with one avail.idx store and at most
 * one kick, at the end of the tick (like Linux's virtio_queue_rqs); completions are reaped in one
 * pass per call-eventfd wakeup.
 *
 * Cost: each submission is one promise, one record, one guest allocation and copies in and out.
 * Correctness first. A caller that needs less (the load generator, load.ts) claims the queue with
 * claim(): it then drives the ring itself through `driver` and hears of completions through a
 * RingOwner callback, with no promise or record per request.
 */
import * as native from '../native/index.js'
import { VirtqueueError, type DriverSegment, type SplitQueueDriver } from '../virtqueue/index.js'
import { VhostUserClientError } from './errors.js'
import type { GuestRam } from './guest-ram.js'

/** One buffer of a chain: its initial bytes (`data`) or a length filled with `fill`. */
export interface ChainBuffer {
  /** Initial content; its length is the buffer's length. Readable buffers send it. */
  data?: Uint8Array
  /** Length when `data` is absent. */
  len?: number
  /** Device-writable. Writable buffers must follow all readable ones (virtio 1.2 §2.7.4.2). */
  writable: boolean
  /** Byte value of a buffer given by `len` (default 0), so an unwritten byte is recognisable. */
  fill?: number
}

/** What a completed submission returns. */
export interface Completion {
  /** The used element's length: bytes the back-end says it wrote. */
  usedLen: number
  /** Contents of the writable buffers, in order. */
  in: Uint8Array[]
}

/** Per-submission options. */
export interface SubmitOptions {
  /** Use one indirect descriptor table (needs VIRTIO_RING_F_INDIRECT_DESC). */
  indirect: boolean
  /** Split each buffer into descriptors of at most this many bytes (0: one descriptor per buffer). */
  maxSegment: number
  /** Reject with EFRONTEND_TIMEOUT after this many ms (0: never). The chain's memory is freed when it completes. */
  timeoutMs: number
}

/**
 * A caller that drives a claimed queue's ring itself (see ClientQueue.claim). Both methods are
 * called on the event loop, never re-entrantly.
 */
export interface RingOwner {
  /** The call eventfd fired and has been drained: reap used elements through the driver. */
  onCall(): void
  /** The queue closed (the client was closed or the back-end went away); the ring is dead. */
  onClose(reason: Error): void
}

/** What claim() hands out: the ring and its kick. */
export interface RingLease {
  /** The queue's ring, to add chains to and reap from. */
  readonly driver: SplitQueueDriver
  /** Writes the kick eventfd (call only when `driver.needsKick()` says so). */
  kick(): void
  /** Gives the queue back to promise-based submissions. The owner must have nothing in flight. */
  release(): void
}

/** A submission from creation to completion. */
interface Submission {
  buffers: readonly ChainBuffer[] | null
  /** Guest allocation holding the buffers (-1: not allocated yet, or raw segments). */
  gpa: number
  allocLen: number
  segs: DriverSegment[]
  opts: SubmitOptions
  resolve(c: Completion): void
  reject(err: Error): void
  timer: NodeJS.Timeout | null
  /** Settled already (timeout): on completion only free its memory. */
  settled: boolean
}

/** Buffers are packed at this alignment inside a submission's allocation. */
const BUFFER_ALIGN = 8

/** The client side of one virtqueue. */
export class ClientQueue {
  private readonly inflight: (Submission | undefined)[]
  private readonly backlog: Submission[] = []
  private readonly poller: native.Poller
  private readonly flushBound = (): void => this.flush()
  private inflightCount = 0
  private flushScheduled = false
  private closedBy: Error | null = null
  private owner: RingOwner | null = null

  /**
   * `kickFd`/`callFd` are this side's ends of the eventfds given to the back-end; the queue closes
   * them in close(). Polling starts at once.
   */
  constructor(
    readonly index: number,
    private readonly ram: GuestRam,
    readonly driver: SplitQueueDriver,
    readonly kickFd: number,
    readonly callFd: number,
  ) {
    this.inflight = new Array<Submission | undefined>(driver.size)
    this.poller = new native.Poller(callFd, () => this.onCall())
    this.poller.start()
    this.poller.unref()
  }

  /** Submissions made available or waiting for room. */
  get pending(): number {
    return this.inflightCount + this.backlog.length
  }

  /**
   * Hands the ring to `owner` until the lease is released: the caller adds chains and reaps used
   * elements through `driver` itself, and every call-eventfd wakeup goes to `owner.onCall()`.
   * Meanwhile submit() and submitSegments() reject with EFRONTEND_BUSY. Throws EFRONTEND_BUSY when
   * submissions are pending or the queue is claimed already, EFRONTEND_CLOSED once closed.
   */
  claim(owner: RingOwner): RingLease {
    if (this.closedBy !== null) throw new VhostUserClientError('EFRONTEND_CLOSED', `queue ${this.index} is closed`)
    if (this.owner !== null || this.pending > 0) {
      throw new VhostUserClientError('EFRONTEND_BUSY', `queue ${this.index} is ${this.owner !== null ? 'claimed' : 'busy with submissions'}`)
    }
    this.owner = owner
    // A claimed queue has work in flight whenever its owner says so: keep the loop alive meanwhile.
    this.poller.ref()
    let released = false
    return {
      driver: this.driver,
      kick: () => native.eventfdWrite(this.kickFd),
      release: () => {
        if (released) return
        released = true
        if (this.owner === owner) this.owner = null
        if (this.closedBy === null) this.poller.unref()
      },
    }
  }

  /** Places `buffers` in guest memory as one chain and resolves when the back-end returns it. */
  submit(buffers: readonly ChainBuffer[], opts: SubmitOptions): Promise<Completion> {
    let total = 0
    for (const b of buffers) total = align(total, BUFFER_ALIGN) + bufferLength(b)
    if (total > this.ram.maxAllocation) {
      return Promise.reject(new VhostUserClientError('EFRONTEND_ARGUMENT', `${total} bytes of buffers exceed a guest memory region`))
    }
    return this.enqueue(buffers, Math.max(total, 1), [], opts)
  }

  /** Submits raw guest-physical segments (no allocation, no copies); resolves with the used length. */
  submitSegments(segs: readonly DriverSegment[], opts: SubmitOptions): Promise<number> {
    return this.enqueue(null, 0, segs.map((s) => ({ ...s })), opts).then((c) => c.usedLen)
  }

  /** Rejects everything pending with `reason`, stops polling and closes the eventfds. Idempotent. */
  close(reason: Error): void {
    if (this.closedBy !== null) return
    this.closedBy = reason
    this.poller.close()
    for (const fd of [this.kickFd, this.callFd]) {
      try { native.close(fd) } catch { /* already closed */ }
    }
    const owner = this.owner
    this.owner = null
    owner?.onClose(reason)
    for (let head = 0; head < this.inflight.length; head++) {
      const s = this.inflight[head]
      if (s !== undefined) this.settle(s, null, reason)
    }
    this.inflight.fill(undefined)
    this.inflightCount = 0
    for (const s of this.backlog.splice(0)) this.settle(s, null, reason)
  }

  private enqueue(buffers: readonly ChainBuffer[] | null, allocLen: number, segs: DriverSegment[], opts: SubmitOptions): Promise<Completion> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy)
    if (this.owner !== null) return Promise.reject(new VhostUserClientError('EFRONTEND_BUSY', `queue ${this.index} is claimed`))
    return new Promise<Completion>((resolve, reject) => {
      const s: Submission = { buffers, gpa: -1, allocLen, segs, opts, resolve, reject, timer: null, settled: false }
      if (opts.timeoutMs > 0) s.timer = setTimeout(() => this.expire(s), opts.timeoutMs)
      if (this.backlog.length > 0 || !this.place(s)) this.backlog.push(s)
    })
  }

  /** Tries to put `s` on the ring. False when guest memory or descriptors are short right now. */
  private place(s: Submission): boolean {
    if (s.buffers !== null && s.gpa < 0) {
      const gpa = this.ram.alloc(s.allocLen)
      if (gpa < 0) return false
      s.gpa = gpa
      s.segs = this.layOut(s.buffers, gpa, s.opts.maxSegment)
    }
    let head: number
    try {
      head = this.driver.addChain(s.segs, s.opts.indirect)
    } catch (err) {
      // EVQ_BAD_ARGUMENT: the chain can never be placed (too long, bad segment, no indirect pool).
      this.settle(s, null, err instanceof VirtqueueError ? new VhostUserClientError('EFRONTEND_ARGUMENT', err.message, { cause: err }) : (err as Error))
      return true
    }
    if (head < 0) return false
    this.inflight[head] = s
    if (this.inflightCount++ === 0) this.poller.ref()
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flushBound)
    }
    return true
  }

  /** Copies readable buffers into guest memory, initialises writable ones, and cuts segments. */
  private layOut(buffers: readonly ChainBuffer[], base: number, maxSegment: number): DriverSegment[] {
    const segs: DriverSegment[] = []
    const mem = this.ram.memory
    let off = 0
    for (const b of buffers) {
      off = align(off, BUFFER_ALIGN)
      const len = bufferLength(b)
      const gpa = base + off
      if (b.data !== undefined) mem.write(gpa, b.data)
      else if (len > 0) mem.write(gpa, new Uint8Array(len).fill(b.fill ?? 0))
      if (len === 0 || maxSegment <= 0) {
        segs.push({ gpa, len, writable: b.writable })
      } else {
        for (let at = 0; at < len; at += maxSegment) segs.push({ gpa: gpa + at, len: Math.min(maxSegment, len - at), writable: b.writable })
      }
      off += len
    }
    return segs
  }

  /** End of tick: publish everything added and kick once if the back-end wants it. */
  private flush(): void {
    this.flushScheduled = false
    if (this.closedBy !== null) return
    this.driver.publishAvail()
    if (this.driver.needsKick()) native.eventfdWrite(this.kickFd)
  }

  private onCall(): void {
    if (this.closedBy !== null) return
    native.eventfdRead(this.callFd)
    if (this.owner !== null) {
      this.owner.onCall()
      return
    }
    try {
      for (;;) {
        const head = this.driver.reapUsed()
        if (head < 0) break
        const s = this.inflight[head]
        this.inflight[head] = undefined
        if (--this.inflightCount === 0) this.poller.unref()
        // INVARIANT: reapUsed only returns heads it made available, and each was recorded in place().
        if (s !== undefined) this.complete(s, this.driver.lastUsedLen)
      }
    } catch (err) {
      this.close(new VhostUserClientError('EFRONTEND_PROTOCOL', `queue ${this.index}: ${(err as Error).message}`, { cause: err }))
      return
    }
    while (this.backlog.length > 0 && this.place(this.backlog[0])) this.backlog.shift()
  }

  private complete(s: Submission, usedLen: number): void {
    const ins: Uint8Array[] = []
    if (s.buffers !== null && !s.settled) {
      let off = 0
      for (const b of s.buffers) {
        off = align(off, BUFFER_ALIGN)
        const len = bufferLength(b)
        if (b.writable) {
          const out = new Uint8Array(len)
          this.ram.memory.read(s.gpa + off, out)
          ins.push(out)
        }
        off += len
      }
    }
    this.settle(s, { usedLen, in: ins }, null)
  }

  /** Frees the submission's memory and settles its promise once. */
  private settle(s: Submission, c: Completion | null, err: Error | null): void {
    if (s.gpa >= 0 && this.closedBy === null) this.ram.release(s.gpa, s.allocLen)
    s.gpa = -1
    if (s.timer !== null) clearTimeout(s.timer)
    s.timer = null
    if (s.settled) return
    s.settled = true
    if (err !== null) s.reject(err)
    else s.resolve(c as Completion)
  }

  /** Timeout: a backlogged submission is dropped; an in-flight one stays on the ring until the back-end returns it. */
  private expire(s: Submission): void {
    s.timer = null
    const i = this.backlog.indexOf(s)
    const err = new VhostUserClientError('EFRONTEND_TIMEOUT', `queue ${this.index}: no completion within ${s.opts.timeoutMs} ms`)
    if (i >= 0) {
      this.backlog.splice(i, 1)
      this.settle(s, null, err)
      return
    }
    s.settled = true
    s.reject(err)
  }
}

function bufferLength(b: ChainBuffer): number {
  return b.data !== undefined ? b.data.length : (b.len ?? 0)
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a
}
