/**
 * GuestMemory: the guest's RAM as the frontend's memory table describes it, mapped into this process in windows, and
 * guest-physical address (GPA) translation over those windows.
 *
 * Owns: validation of the region table (once, at creation; the table is then immutable and is replaced whole, as in
 * rust-vmm vm-memory), the window layout, GPA lookup (binary search with a last-hit cache), range translation into
 * DescChain segments, bounded copies in and out, and UVA→GPA translation for vring addresses.
 * Does not own: how a window is mapped or unmapped (the caller passes `mapWindow`/`unmapWindow`: native mmap in the
 * server, ArrayBuffers in tests) or anything about rings.
 *
 * Why windows: Node 20 typed arrays stop at 4 GiB, so a region is mapped as windows of `windowStride` bytes. Each
 * window also covers the first `windowOverlap` bytes of the next one (capped at the region end), so any area of at most
 * `windowOverlap` bytes inside one region (a ring: at most 512 KiB for 32768 entries) lies wholly inside one window and
 * gets one typed-array view. Longer ranges are split into segments at window and region boundaries.
 *
 * Address arithmetic is done in doubles, exact below 2^53: regions must end at or below 2^53, and every range check
 * is written as `len <= LIMIT - gpa` so that no sum is ever rounded.
 */
import { VirtqueueError } from './errors.js'
import type { DescChain } from './desc-chain.js'

/** A guest-physical address. */
export type Gpa = number & { readonly __gpa: true }
/** An address in the frontend's (QEMU's) virtual address space. */
export type Uva = number & { readonly __uva: true }

/** One guest RAM region as the frontend describes it (vhost-user memory table). */
export interface RegionSpec {
  /** Guest-physical address of the first byte. */
  gpa: number
  /** Length in bytes (> 0). */
  size: number
  /** Frontend virtual address of the first byte (vring addresses arrive as these). */
  uva: number
  /** Offset of the region inside the file descriptor that backs it. */
  mmapOffset: number
}

/** A contiguous mapped piece of one region. Data segments refer to windows by index. */
export interface GuestWindow {
  /** Guest-physical address of bytes[0]. */
  readonly gpa: number
  /** Frontend virtual address of bytes[0]. */
  readonly uva: number
  /** Length in bytes. */
  readonly size: number
  /** The mapped bytes. */
  readonly bytes: Uint8Array
  /** Little-endian field access over `bytes` (pass `true` for littleEndian). */
  readonly view: DataView
  /** Host-endian u16 view over `bytes` (host is asserted little-endian), for ring indices. */
  readonly u16: Uint16Array
  /** Host-endian u32 view over `bytes`. */
  readonly u32: Uint32Array
  /** Index of the region in `GuestMemory.regions`. */
  readonly regionIndex: number
  /** Offset of bytes[0] inside the region. */
  readonly offsetInRegion: number
}

/** Maps `length` bytes of `region` starting `offsetInRegion` bytes into it; returns a view of exactly that length. */
export type MapWindow = (region: RegionSpec, regionIndex: number, offsetInRegion: number, length: number) => Uint8Array

/** Window layout options. */
export interface GuestMemoryOptions {
  /** Bytes between window starts (default 1 GiB). For a real mmap it must be a multiple of the page size. */
  windowStride?: number
  /** Bytes each window extends into the next (default 2 MiB): the longest area guaranteed to fit one window. */
  windowOverlap?: number
  /** If a mapWindow call fails part-way through `create`, the windows mapped so far are released with this. */
  unmapWindow?: (bytes: Uint8Array) => void
}

/** Default distance between window starts. */
export const DEFAULT_WINDOW_STRIDE = 1 << 30
/** Default overlap: 2 MiB, four times the largest ring area. */
export const DEFAULT_WINDOW_OVERLAP = 2 << 20

/** Exclusive limit of representable addresses: doubles are exact integers below 2^53. */
const ADDRESS_LIMIT = 2 ** 53
/** A window must fit a Node 20 typed array and its offsets and lengths must fit DescChain's u32 arrays. */
const MAX_WINDOW_BYTES = 0xffffffff

/** Validated, mapped guest memory. Immutable: a new memory table builds a new GuestMemory. */
export class GuestMemory {
  /** The region table, in the frontend's order (window.regionIndex refers to it). */
  readonly regions: readonly RegionSpec[]
  /** Mapped windows, sorted by guest-physical address. Emptied by dispose(). */
  readonly windows: readonly GuestWindow[]
  readonly #windowList: GuestWindow[]
  /** Window start and end GPAs, parallel to windows, for the search without touching window objects. */
  readonly #starts: Float64Array
  readonly #ends: Float64Array
  #count: number
  #lastHit = 0

  private constructor(regions: readonly RegionSpec[], windows: GuestWindow[]) {
    this.regions = regions
    this.#windowList = windows
    this.windows = windows
    this.#count = windows.length
    this.#starts = new Float64Array(windows.length)
    this.#ends = new Float64Array(windows.length)
    for (let i = 0; i < windows.length; i++) {
      this.#starts[i] = windows[i].gpa
      this.#ends[i] = windows[i].gpa + windows[i].size
    }
  }

  /**
   * Validates (size > 0, gpa/uva + size <= 2^53, no GPA overlap, no UVA overlap), then maps each region in windows of
   * `windowStride` bytes, each window extended by `windowOverlap` bytes into the next (capped at the region end), so
   * that any area up to windowOverlap bytes long (a ring) lies wholly inside one window. Node 20 typed arrays stop at
   * 4 GiB. Throws VirtqueueError. Regions are immutable afterwards: the table is replaced whole.
   */
  static create(regions: readonly RegionSpec[], mapWindow: MapWindow, opts: GuestMemoryOptions = {}): GuestMemory {
    const stride = opts.windowStride ?? DEFAULT_WINDOW_STRIDE
    const overlap = opts.windowOverlap ?? DEFAULT_WINDOW_OVERLAP
    if (!Number.isSafeInteger(stride) || stride < 1 || !Number.isSafeInteger(overlap) || overlap < 0) {
      throw new VirtqueueError('EVQ_BAD_OPTIONS', `window stride ${stride} / overlap ${overlap} must be integers`, {
        stride,
        overlap,
      })
    }
    if (stride + overlap > MAX_WINDOW_BYTES) {
      throw new VirtqueueError('EVQ_BAD_OPTIONS', `window of ${stride + overlap} bytes exceeds ${MAX_WINDOW_BYTES}`, {
        stride,
        overlap,
      })
    }
    const table = regions.map((r, i) => validateRegion(r, i))
    checkDisjoint(table, 'gpa')
    checkDisjoint(table, 'uva')

    const order = table.map((_, i) => i).sort((a, b) => table[a].gpa - table[b].gpa)
    const mapped: Uint8Array[] = []
    const windows: GuestWindow[] = []
    try {
      for (const ri of order) {
        const region = table[ri]
        for (let off = 0; ; off += stride) {
          const length = Math.min(stride + overlap, region.size - off)
          const bytes = mapWindow(region, ri, off, length)
          mapped.push(bytes)
          windows.push(makeWindow(region, ri, off, length, bytes))
          if (off + length >= region.size) break
        }
      }
    } catch (err) {
      if (opts.unmapWindow !== undefined) for (const bytes of mapped) opts.unmapWindow(bytes)
      throw err
    }
    return new GuestMemory(Object.freeze(table), windows)
  }

  /**
   * Index of a window that holds all of [gpa, gpa+len), or -1 (also for len 0 past the end, overflow, >= 2^53).
   * Binary search + last-hit cache.
   */
  findWindow(gpa: number, len: number): number {
    if (!(gpa >= 0 && gpa < ADDRESS_LIMIT && len >= 0 && len <= ADDRESS_LIMIT - gpa)) return -1
    const end = gpa + len // exact: at most 2^53
    const starts = this.#starts
    const ends = this.#ends
    let i = this.#lastHit
    if (i < this.#count && starts[i] <= gpa && gpa < ends[i] && end <= ends[i]) return i
    // The last window starting at or before gpa reaches furthest among those holding gpa: windows of one region
    // start in order and end in order, and windows of different regions do not overlap.
    let lo = 0
    let hi = this.#count - 1
    i = -1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (starts[mid] <= gpa) {
        i = mid
        lo = mid + 1
      } else {
        hi = mid - 1
      }
    }
    if (i < 0 || gpa >= ends[i] || end > ends[i]) return -1
    this.#lastHit = i
    return i
  }

  /**
   * Translate a guest-physical range into segments appended to `out` (crossing window and adjacent-region
   * boundaries), adding `len` to out.readableBytes or out.writableBytes. Returns false, with `out` unchanged, if any
   * byte is unmapped, the range overflows, out is full, or a readable range would follow writable segments
   * (virtio 1.2 §2.7.4.2: readable first). A zero-length range appends nothing. Never throws.
   */
  translate(gpa: number, len: number, writable: boolean, out: DescChain): boolean {
    if (!(gpa >= 0 && gpa <= ADDRESS_LIMIT && len >= 0 && len <= ADDRESS_LIMIT - gpa)) return false
    if (!writable && out.count !== out.readableCount) return false
    const starts = this.#starts
    const ends = this.#ends
    let n = out.count
    let cur = gpa
    let left = len
    while (left > 0) {
      if (n === out.capacity) return false
      const w = this.findWindow(cur, 1)
      if (w < 0) return false
      // INVARIANT: starts[w] <= cur < ends[w], and a window is at most MAX_WINDOW_BYTES long, so offset and piece
      // fit the u32 arrays.
      const piece = Math.min(left, ends[w] - cur)
      out.window[n] = w
      out.offset[n] = cur - starts[w]
      out.length[n] = piece
      n++
      cur += piece
      left -= piece
    }
    // Segments past out.count are not in use until count moves, so the early returns above leave `out` unchanged.
    out.count = n
    if (writable) {
      out.writableBytes += len
    } else {
      out.readableBytes += len
      out.readableCount = n
    }
    return true
  }

  /** Whether every byte of [gpa, gpa+len) is mapped (possibly across windows and adjacent regions). */
  contains(gpa: number, len: number): boolean {
    if (!(gpa >= 0 && gpa <= ADDRESS_LIMIT && len >= 0 && len <= ADDRESS_LIMIT - gpa)) return false
    let cur = gpa
    const end = gpa + len
    while (cur < end) {
      const w = this.findWindow(cur, 1)
      if (w < 0) return false
      cur = this.#ends[w]
    }
    return true
  }

  /**
   * Copies guest bytes [gpa, gpa+len) into dst[dstOffset...]. Returns false, copying nothing, if any byte is unmapped.
   * Control path (allocates a view per window crossed); throws VirtqueueError EVQ_BAD_ARGUMENT if dst is too short.
   */
  read(gpa: number, dst: Uint8Array, dstOffset = 0, len = dst.length - dstOffset): boolean {
    checkBufferRange(dst, dstOffset, len)
    if (!this.contains(gpa, len)) return false
    let cur = gpa
    let at = dstOffset
    const end = dstOffset + len
    while (at < end) {
      const w = this.findWindow(cur, 1)
      const off = cur - this.#starts[w]
      const piece = Math.min(end - at, this.#ends[w] - cur)
      dst.set(this.#windowList[w].bytes.subarray(off, off + piece), at)
      at += piece
      cur += piece
    }
    return true
  }

  /**
   * Copies src[srcOffset...srcOffset+len) into guest memory at gpa. Returns false, writing nothing, if any byte is
   * unmapped. Control path; throws VirtqueueError EVQ_BAD_ARGUMENT if src is too short.
   */
  write(gpa: number, src: Uint8Array, srcOffset = 0, len = src.length - srcOffset): boolean {
    checkBufferRange(src, srcOffset, len)
    if (!this.contains(gpa, len)) return false
    let cur = gpa
    let at = srcOffset
    const end = srcOffset + len
    while (at < end) {
      const w = this.findWindow(cur, 1)
      const off = cur - this.#starts[w]
      const piece = Math.min(end - at, this.#ends[w] - cur)
      this.#windowList[w].bytes.set(src.subarray(at, at + piece), off)
      at += piece
      cur += piece
    }
    return true
  }

  /** Frontend virtual address → guest physical address of the same byte, or -1. */
  uvaToGpa(uva: number): number {
    for (const r of this.regions) {
      if (uva >= r.uva && uva - r.uva < r.size) return r.gpa + (uva - r.uva)
    }
    return -1
  }

  /**
   * Calls unmap for every window (given by the lead: native.unmap); afterwards lookups find nothing and the object
   * must not be used. A second call does nothing.
   */
  dispose(unmapWindow: (bytes: Uint8Array) => void): void {
    const list = this.#windowList.splice(0)
    this.#count = 0
    for (const w of list) unmapWindow(w.bytes)
  }
}

function validateRegion(r: RegionSpec, index: number): RegionSpec {
  const { gpa, size, uva, mmapOffset } = r
  const ctx = { index, gpa, size, uva, mmapOffset }
  for (const [name, v] of [
    ['gpa', gpa],
    ['size', size],
    ['uva', uva],
    ['mmapOffset', mmapOffset],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new VirtqueueError('EVQ_BAD_REGION', `region ${index}: ${name} ${v} is not a non-negative integer`, ctx)
    }
  }
  if (size === 0) throw new VirtqueueError('EVQ_BAD_REGION', `region ${index} has size 0`, ctx)
  if (size > ADDRESS_LIMIT - gpa || size > ADDRESS_LIMIT - uva || size > ADDRESS_LIMIT - mmapOffset) {
    throw new VirtqueueError('EVQ_BAD_REGION', `region ${index} ends beyond 2^53`, ctx)
  }
  return Object.freeze({ gpa, size, uva, mmapOffset })
}

function checkDisjoint(table: readonly RegionSpec[], key: 'gpa' | 'uva'): void {
  const sorted = [...table].sort((a, b) => a[key] - b[key])
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]
    const cur = sorted[i]
    // INVARIANT: prev[key] + prev.size <= 2^53, checked in validateRegion, so the sum is exact.
    if (prev[key] + prev.size > cur[key]) {
      throw new VirtqueueError(
        'EVQ_REGION_OVERLAP',
        `regions overlap in ${key === 'gpa' ? 'guest-physical' : 'frontend-virtual'} space at 0x${cur[key].toString(16)}`,
        { key, first: prev, second: cur },
      )
    }
  }
}

function makeWindow(region: RegionSpec, regionIndex: number, off: number, length: number, bytes: Uint8Array): GuestWindow {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== length || bytes.byteOffset % 4 !== 0) {
    throw new VirtqueueError('EVQ_BAD_MAPPING', `mapWindow returned a view that is not ${length} bytes, 4-aligned`, {
      regionIndex,
      offsetInRegion: off,
      length,
      returnedLength: bytes?.byteLength,
    })
  }
  const buffer = bytes.buffer
  return Object.freeze({
    gpa: region.gpa + off,
    uva: region.uva + off,
    size: length,
    bytes,
    view: new DataView(buffer, bytes.byteOffset, length),
    u16: new Uint16Array(buffer, bytes.byteOffset, length >>> 1),
    u32: new Uint32Array(buffer, bytes.byteOffset, length >>> 2),
    regionIndex,
    offsetInRegion: off,
  })
}

function checkBufferRange(buf: Uint8Array, offset: number, len: number): void {
  if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(len) && offset >= 0 && len >= 0 && len <= buf.length - offset)) {
    throw new VirtqueueError('EVQ_BAD_ARGUMENT', `buffer range [${offset}, +${len}) exceeds ${buf.length} bytes`, {
      offset,
      len,
      bufferLength: buf.length,
    })
  }
}
