/**
 * The memory disk: an mq Operations driver over sparse RAM that several threads may serve at
 * once without a lock. Completes reads and writes inside queueRq (one copy each way, as Linux's
 * null_blk with memory backing does); discard and write-zeroes end once the freed pages are gone.
 *
 * Storage (a {@link MemoryStore}, plain data any thread can attach to):
 * - a memfd of the disk's size: sparse, so `--memory 1T` starts at once and holds only what was
 *   written. Each attached disk maps it itself, in windows of 1 GiB mapped on first use (Node 20
 *   typed arrays stop at 4 GiB); a transfer that crosses a window boundary is split there.
 * - a `written` bitmap, one bit per 4 KiB page, in a SharedArrayBuffer (zero pages until touched):
 *   a page reads from the memfd only once it was written. Reading a hole through a shared mapping
 *   of a memfd would allocate the page (tmpfs fills read faults), so an unwritten page is answered
 *   with zeroes instead, and a disk that is only read holds nothing.
 *
 * Ordering between threads: a writer copies the data, then sets the page's bit (Atomics.or: the
 * data is visible before the bit); a reader loads the bit with Atomics.load. A guest that reads on
 * one queue what it wrote on another has seen the write complete through the used ring first, so
 * it never races the bit. Requests in flight at once on overlapping sectors have no defined order
 * (virtio 1.2 §5.2.6.4 leaves it to the driver): any interleaving is a valid answer.
 *
 * Discard / write-zeroes: bytes of partly covered pages are zeroed in place (only where written);
 * whole pages have their bits cleared, then are punched out of the memfd
 * (fallocate PUNCH_HOLE | KEEP_SIZE, on the libuv thread pool), and the request ends when the
 * punch did: the memory is given back before the guest hears the range is gone.
 *
 * Sees only mq types, byte segments and the native layer; knows nothing of virtio or threads.
 */
import fs from 'node:fs'
import { BlkStatus, ReqOp, type Operations, type Request } from '../mq/index.js'
import * as native from '../native/index.js'
import { DiskError } from './errors.js'

const SECTOR_SIZE = 512
/** Allocation unit of the memfd and of the `written` bitmap. */
export const MEMORY_PAGE_SIZE = 4096
/** Bytes per mapping of the memfd. */
const WINDOW_SIZE = 1 << 30
/** Largest memory disk: page numbers stay below 2^32 (unsigned 32-bit arithmetic on the hot path). */
export const MAX_MEMORY_DISK_BYTES = 2 ** 32 * MEMORY_PAGE_SIZE
const PUNCH_HOLE = native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_KEEP_SIZE

/** A memory disk's storage, as plain data: pass it to another thread and `MemoryDisk.attach` it there. */
export interface MemoryStore {
  /** The memfd: a process-wide fd number, open as long as the disk that created the store. */
  readonly fd: number
  /** Disk size in bytes (the memfd is rounded up to whole pages). */
  readonly bytes: number
  /** One bit per page, set once the page was written. */
  readonly written: SharedArrayBuffer
}

/** Per-request state of a discard / write-zeroes: punches still running. */
class PunchState {
  pending = 0
  failed = 0
  generation = 0
  constructor(readonly rq: Request) {}
}

/** A punch finished (shared callback: no closure per request). */
function punched(state: PunchState, res: number): void {
  if (res < 0) state.failed = res
  if (--state.pending > 0) return
  state.rq.end(state.failed === 0 ? BlkStatus.OK : BlkStatus.IOERR, state.generation)
}

/** A sparse in-memory disk over a {@link MemoryStore}. */
export class MemoryDisk implements Operations {
  /** The storage, for other threads to attach to. */
  readonly store: MemoryStore
  private readonly written: Int32Array
  /** Mapped windows of the memfd, by index; null until first used. */
  private readonly windows: Array<Buffer | null>
  /** Bytes of the memfd: the disk size rounded up to whole pages. */
  private readonly fileBytes: number
  private readonly ownsFd: boolean
  private closed = false

  private constructor(store: MemoryStore, ownsFd: boolean) {
    this.store = store
    this.ownsFd = ownsFd
    this.written = new Int32Array(store.written)
    this.fileBytes = Math.ceil(store.bytes / MEMORY_PAGE_SIZE) * MEMORY_PAGE_SIZE
    this.windows = new Array<Buffer | null>(Math.ceil(this.fileBytes / WINDOW_SIZE)).fill(null)
  }

  /**
   * A new, empty disk of `bytes` (a multiple of 512, at most {@link MAX_MEMORY_DISK_BYTES}); it
   * owns the memfd and closes it in close().
   *
   * @throws DiskError `EDISK_SIZE` for a size out of range; `EDISK_OPEN` when no memfd can be made
   */
  static create(bytes: number): MemoryDisk {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % SECTOR_SIZE !== 0 || bytes > MAX_MEMORY_DISK_BYTES) {
      throw new DiskError('EDISK_SIZE', `a memory disk holds 512 to ${MAX_MEMORY_DISK_BYTES} bytes in whole sectors, not ${bytes}`)
    }
    const pages = Math.ceil(bytes / MEMORY_PAGE_SIZE)
    let fd: number
    try {
      fd = native.memfdCreate('vhost-user-blk-memory-disk', pages * MEMORY_PAGE_SIZE)
    } catch (err) {
      throw new DiskError('EDISK_OPEN', `cannot create the memory disk's memfd: ${(err as Error).message}`, err)
    }
    return new MemoryDisk({ fd, bytes, written: new SharedArrayBuffer(Math.ceil(pages / 32) * 4) }, true)
  }

  /** The same disk as `store`'s creator serves (another thread's instance); close() leaves the fd open. */
  static attach(store: MemoryStore): MemoryDisk {
    return new MemoryDisk(store, false)
  }

  /** Bytes of RAM the disk holds now (the memfd's allocated blocks). */
  get allocatedBytes(): number {
    return fs.fstatSync(this.store.fd).blocks * 512
  }

  /** Gives each request its discard / write-zeroes state. */
  initRequest(rq: Request): void {
    rq.pdu = new PunchState(rq)
  }

  // No capacity check here: the blk layer checked every range against the GenDisk before queueRq.
  queueRq(rq: Request): BlkStatus {
    switch (rq.op) {
      case ReqOp.Read:
        this.read(rq)
        rq.bytesDone = rq.sectors * SECTOR_SIZE
        break
      case ReqOp.Write:
        this.write(rq)
        break
      case ReqOp.Flush:
        break
      case ReqOp.Discard:
      case ReqOp.WriteZeroes:
        // Discarded sectors read back as zeroes too: a deterministic answer is kinder to guests.
        this.zeroRanges(rq)
        return BlkStatus.OK
      default:
        return BlkStatus.NOTSUPP
    }
    rq.endOk()
    return BlkStatus.OK
  }

  /** Unmaps this instance's windows; the creator also closes the memfd. Nothing may be in flight. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (let i = 0; i < this.windows.length; i++) {
      const w = this.windows[i]
      if (w !== null) native.unmap(w.buffer as ArrayBuffer)
      this.windows[i] = null
    }
    if (this.ownsFd) native.close(this.store.fd)
  }

  /** Copies disk bytes into the request's segments; unwritten pages read as zeroes. */
  private read(rq: Request): void {
    let pos = rq.sector * SECTOR_SIZE
    for (let s = 0; s < rq.nrSegments; s++) {
      const buf = rq.segBuffer[s]
      let off = rq.segOffset[s]
      const end = off + rq.segLength[s]
      while (off < end) {
        const index = Math.floor(pos / WINDOW_SIZE)
        const within = pos - index * WINDOW_SIZE
        const page = (pos / MEMORY_PAGE_SIZE) >>> 0
        const state = this.bit(page)
        // INVARIANT: pos < fileBytes (checked by the blk layer), so the run stays in the file.
        const run = this.runLength(page, pos, Math.min(end - off, WINDOW_SIZE - within), state)
        if (state === 0) buf.fill(0, off, off + run)
        else buf.set(this.window(index).subarray(within, within + run), off)
        pos += run
        off += run
      }
    }
  }

  /** Copies the request's segments to disk bytes and marks their pages written. */
  private write(rq: Request): void {
    const start = rq.sector * SECTOR_SIZE
    let pos = start
    for (let s = 0; s < rq.nrSegments; s++) {
      const buf = rq.segBuffer[s]
      let off = rq.segOffset[s]
      const end = off + rq.segLength[s]
      while (off < end) {
        const index = Math.floor(pos / WINDOW_SIZE)
        const within = pos - index * WINDOW_SIZE
        const n = Math.min(end - off, WINDOW_SIZE - within)
        this.window(index).set(buf.subarray(off, off + n), within)
        pos += n
        off += n
      }
    }
    // After the data: a reader that sees a bit sees the bytes (module notes).
    if (pos > start) this.markWritten((start / MEMORY_PAGE_SIZE) >>> 0, ((pos - 1) / MEMORY_PAGE_SIZE) >>> 0)
  }

  /**
   * Bytes from `pos` (in page `page`, whose bit is `state`), at most `limit`, over which the
   * pages' written bits stay `state`.
   */
  private runLength(page: number, pos: number, limit: number, state: number): number {
    const last = ((pos + limit - 1) / MEMORY_PAGE_SIZE) >>> 0
    let p = page
    while (p < last && this.bit(p + 1) === state) p++
    return Math.min(limit, (p + 1) * MEMORY_PAGE_SIZE - pos)
  }

  private bit(page: number): number {
    return (Atomics.load(this.written, page >>> 5) >>> (page & 31)) & 1
  }

  /** Sets the bits of pages first..last (only where not yet set: most writes overwrite written pages). */
  private markWritten(first: number, last: number): void {
    const w = this.written
    for (let p = first; p <= last; p++) {
      const mask = 1 << (p & 31)
      if ((Atomics.load(w, p >>> 5) & mask) === 0) Atomics.or(w, p >>> 5, mask)
    }
  }

  /** Clears the bits of pages first..last-1. */
  private clearWritten(first: number, last: number): void {
    const w = this.written
    let p = first
    while (p < last) {
      const word = p >>> 5
      if ((p & 31) === 0 && last - p >= 32) {
        // Untouched words stay untouched: the bitmap of a big disk is mostly zero pages.
        if (Atomics.load(w, word) !== 0) Atomics.store(w, word, 0)
        p += 32
      } else {
        Atomics.and(w, word, ~(1 << (p & 31)))
        p++
      }
    }
  }

  private window(index: number): Buffer {
    return this.windows[index] ?? this.mapWindow(index)
  }

  private mapWindow(index: number): Buffer {
    const offset = index * WINDOW_SIZE
    const bytes = Buffer.from(native.mmap(this.store.fd, Math.min(WINDOW_SIZE, this.fileBytes - offset), offset, true))
    this.windows[index] = bytes
    return bytes
  }

  /**
   * Discard / write-zeroes: partial pages zeroed in place, whole pages dropped from the bitmap
   * and punched out of the memfd; the request ends when the last punch finished.
   */
  private zeroRanges(rq: Request): void {
    const state = rq.pdu as PunchState
    state.generation = rq.generation
    state.failed = 0
    // One extra count held while the ranges are set up, so a punch finishing early cannot end it.
    state.pending = 1
    for (let i = 0; i < rq.nrRanges; i++) {
      const start = rq.rangeSector[i] * SECTOR_SIZE
      const end = start + rq.rangeSectors[i] * SECTOR_SIZE
      const firstWhole = Math.ceil(start / MEMORY_PAGE_SIZE) * MEMORY_PAGE_SIZE
      const endWhole = Math.floor(end / MEMORY_PAGE_SIZE) * MEMORY_PAGE_SIZE
      if (firstWhole >= endWhole) {
        this.zeroBytes(start, end)
        continue
      }
      this.zeroBytes(start, firstWhole)
      this.zeroBytes(endWhole, end)
      this.clearWritten(firstWhole / MEMORY_PAGE_SIZE, endWhole / MEMORY_PAGE_SIZE)
      state.pending++
      native.fallocateAsync(this.store.fd, PUNCH_HOLE, firstWhole, endWhole - firstWhole, state, punched)
    }
    punched(state, 0)
  }

  /** Zeroes [start, end) in the pages that were written; an unwritten page reads as zeroes already. */
  private zeroBytes(start: number, end: number): void {
    let pos = start
    while (pos < end) {
      const page = (pos / MEMORY_PAGE_SIZE) >>> 0
      const n = Math.min(end, (page + 1) * MEMORY_PAGE_SIZE) - pos
      if (this.bit(page) !== 0) {
        // A page never crosses a window: windows start at multiples of 1 GiB.
        const index = Math.floor(pos / WINDOW_SIZE)
        const within = pos - index * WINDOW_SIZE
        this.window(index).fill(0, within, within + n)
      }
      pos += n
    }
  }
}
