/**
 * The frontend's memory table: the region fds it sent (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG)
 * and the GuestMemory mapped from them. Owns those fds and mappings; a table is replaced whole
 * (a new GuestMemory is built, the old one unmapped by the caller once no request uses it).
 *
 * Does not know about rings: the protocol engine stops and restarts them around a change.
 */
import * as native from '../native/index.js'
import { GuestMemory, VirtqueueError, type RegionSpec } from '../virtqueue/index.js'
import { VhostUserError } from './messages.js'

/** A region the frontend sent, with the fd it came with (owned here until the region goes). */
export interface SentRegion {
  spec: RegionSpec
  fd: number
}

const PAGE_SIZE = 4096

/** Maps guest windows from region fds, page-aligning the offset as mmap requires. */
function mapperFor(regions: readonly SentRegion[]) {
  return (region: RegionSpec, regionIndex: number, offsetInRegion: number, length: number): Uint8Array => {
    const fileOffset = region.mmapOffset + offsetInRegion
    const aligned = fileOffset - (fileOffset % PAGE_SIZE)
    const lead = fileOffset - aligned
    const ab = native.mmap(regions[regionIndex].fd, lead + length, aligned, true)
    // A Buffer view lets drivers copy with Buffer#copy, which allocates no view per copy.
    return Buffer.from(ab, lead, length)
  }
}

/** Unmaps one window; the whole ArrayBuffer goes, which detaches every view over it. */
export function unmapWindow(bytes: Uint8Array): void {
  native.unmap(bytes.buffer as ArrayBuffer)
}

/**
 * Checks a region against its fd before anything is mapped: a mapping past the end of the file
 * would raise SIGBUS on first touch, which no JS code can catch.
 */
function checkAgainstFd(r: SentRegion): void {
  const { spec } = r
  if (spec.size <= 0) throw new VhostUserError('EVHOST_BAD_REGION', `memory region at gpa 0x${spec.gpa.toString(16)} has size 0`)
  let fileSize: number
  try {
    fileSize = native.fdSize(r.fd)
  } catch (err) {
    throw new VhostUserError('EVHOST_BAD_REGION', `memory region fd ${r.fd}: ${(err as Error).message}`)
  }
  if (spec.mmapOffset + spec.size > fileSize) {
    throw new VhostUserError(
      'EVHOST_BAD_REGION',
      `memory region mmap_offset 0x${spec.mmapOffset.toString(16)} + size 0x${spec.size.toString(16)} ` +
        `runs past the end of its fd (0x${fileSize.toString(16)} bytes)`,
    )
  }
}

/**
 * Builds the GuestMemory for `regions` (validated, mapped). On failure nothing stays mapped and
 * the fds are left to the caller. Throws VhostUserError.
 */
export function mapRegions(regions: readonly SentRegion[]): GuestMemory {
  for (const r of regions) checkAgainstFd(r)
  const mapped: Uint8Array[] = []
  const map = mapperFor(regions)
  try {
    return GuestMemory.create(
      regions.map((r) => r.spec),
      (region, index, offset, length) => {
        const bytes = map(region, index, offset, length)
        mapped.push(bytes)
        return bytes
      },
    )
  } catch (err) {
    for (const bytes of mapped) unmapWindow(bytes)
    if (err instanceof VirtqueueError) throw new VhostUserError('EVHOST_BAD_REGION', err.message)
    const e = err as Error & { code?: string }
    throw new VhostUserError('EVHOST_BAD_REGION', `cannot map guest memory: ${e.code ?? ''} ${e.message}`)
  }
}
