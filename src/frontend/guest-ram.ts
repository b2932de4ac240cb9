/**
 * The client's "guest RAM": one memfd, mapped into this process and described to the back-end as
 * one or more regions (SET_MEM_TABLE), with an allocator for ring areas and request buffers.
 *
 * Layout, chosen to look like a real QEMU guest: region i covers file bytes
 * [i * regionSize, (i+1) * regionSize) of the one memfd (so mmap_offset is non-zero from the second
 * region on, as for QEMU's RAM above the PCI hole), sits at guest-physical address
 * i * (regionSize + REGION_GAP) (a hole between regions), and at the fake front-end virtual
 * address UVA_BASE + mmap_offset. The back-end only uses UVAs to translate vring addresses, so they
 * need not be real addresses in this process.
 *
 * Owns: the memfd, the mapping (GuestMemory windows) and the allocator. Does not own rings.
 */
import * as native from '../native/index.js'
import { GuestMemory } from '../virtqueue/index.js'
import type { MemRegion } from '../vhost/messages.js'
import { RangeAllocator } from './allocator.js'
import { VhostUserClientError } from './errors.js'

/** Front-end virtual address of file offset 0 (any consistent value works; this one looks like a user-space mapping). */
export const UVA_BASE = 0x7f00_0000_0000
/** Guest-physical gap left between consecutive regions. */
export const REGION_GAP = 2 << 20
/** Region sizes must be page multiples: each region is mmap'ed at its file offset. */
const PAGE_SIZE = 4096

/** Shared guest memory for one client. */
export class GuestRam {
  /** The region table sent with SET_MEM_TABLE (the memfd goes once per region). */
  readonly regions: readonly MemRegion[]
  private readonly allocator: RangeAllocator
  private disposed = false

  private constructor(readonly fd: number, readonly memory: GuestMemory, regions: MemRegion[]) {
    this.regions = regions
    this.allocator = new RangeAllocator(regions.map((r) => ({ start: r.gpa, size: r.size })))
  }

  /** Creates a memfd of `size` bytes split into `regionCount` equal regions and maps it. */
  static create(size: number, regionCount: number): GuestRam {
    if (!Number.isSafeInteger(regionCount) || regionCount < 1 || regionCount > 8) {
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `regions must be 1..8, got ${regionCount}`)
    }
    const regionSize = size / regionCount
    if (!Number.isSafeInteger(regionSize) || regionSize <= 0 || regionSize % PAGE_SIZE !== 0) {
      throw new VhostUserClientError('EFRONTEND_ARGUMENT', `memory size ${size} must split into ${regionCount} regions of whole pages`)
    }
    const regions: MemRegion[] = []
    for (let i = 0; i < regionCount; i++) {
      const mmapOffset = i * regionSize
      regions.push({ gpa: i * (regionSize + REGION_GAP), size: regionSize, uva: UVA_BASE + mmapOffset, mmapOffset })
    }
    const fd = native.memfdCreate('vhost-user-blk-client', size)
    try {
      const memory = GuestMemory.create(
        regions,
        (region, _index, offsetInRegion, length) => new Uint8Array(native.mmap(fd, length, region.mmapOffset + offsetInRegion, true)),
        { unmapWindow: unmapBytes },
      )
      return new GuestRam(fd, memory, regions)
    } catch (err) {
      native.close(fd)
      throw err
    }
  }

  /** Largest buffer alloc() can ever return (one region). */
  get maxAllocation(): number {
    return this.allocator.maxAllocation
  }

  /** Allocates `len` bytes inside one region, aligned to `align`; returns the GPA or -1 when memory is exhausted now. */
  alloc(len: number, align = 64): number {
    return this.allocator.alloc(len, align)
  }

  /** Frees what alloc() returned. */
  release(gpa: number, len: number): void {
    this.allocator.release(gpa, len)
  }

  /** The front-end virtual address of a GPA (for SET_VRING_ADDR). */
  uvaOf(gpa: number): number {
    const r = this.regions.find((x) => gpa >= x.gpa && gpa - x.gpa < x.size)
    if (r === undefined) throw new VhostUserClientError('EFRONTEND_ARGUMENT', `gpa 0x${gpa.toString(16)} is not guest RAM`)
    return r.uva + (gpa - r.gpa)
  }

  /** Unmaps the memory and closes the memfd. Idempotent. */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.memory.dispose(unmapBytes)
    native.close(this.fd)
  }
}

function unmapBytes(bytes: Uint8Array): void {
  native.unmap(bytes.buffer as ArrayBuffer)
}
