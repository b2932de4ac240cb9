/**
 * Ring placement checks and the typed-array views over the three split-ring areas, shared by the device side
 * (split-queue.ts) and the driver side (split-queue-driver.ts).
 *
 * Owns: validation of a ring's size and placement (virtio 1.2 §2.7, §2.7.1) and the one-time construction of its
 * views; the little-endian host assertion (the views are host-endian, virtio 1.x rings are little-endian). Does not own
 * any ring state or memory ordering (see split-queue.ts for the ordering decision).
 */
import { endianness } from 'node:os'
import { VirtqueueError } from './errors.js'
import type { GuestMemory, GuestWindow } from './guest-memory.js'
import {
  AVAIL_RING_ALIGN,
  DESC_TABLE_ALIGN,
  MAX_QUEUE_SIZE,
  USED_RING_ALIGN,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
} from './layout.js'

// Typed arrays use host byte order; virtio 1.x rings are little-endian (Firecracker gates on target_endian too).
if (endianness() !== 'LE') {
  throw new VirtqueueError('EVQ_BIG_ENDIAN_HOST', 'virtqueue ring views need a little-endian host')
}

/** Where a split ring lives and which notification-suppression scheme the driver negotiated. */
export interface SplitQueueConfig {
  /** Queue size: a power of two, 1..32768. */
  size: number
  /** Guest-physical address of the descriptor table (16-byte aligned). */
  descGpa: number
  /** Guest-physical address of the available ring (2-byte aligned). */
  availGpa: number
  /** Guest-physical address of the used ring (4-byte aligned). */
  usedGpa: number
  /** VIRTIO_F_RING_EVENT_IDX negotiated: used_event/avail_event replace the flags. */
  eventIdx: boolean
}

/** Typed-array views over one ring's three areas, built once when the queue starts. */
export interface RingViews {
  /** The descriptor table (16 * size bytes). */
  readonly desc: DataView
  /** The descriptor table as bytes (for zeroing). */
  readonly descBytes: Uint8Array
  /** The available ring as u16: flags, idx, ring[size], used_event. */
  readonly avail: Uint16Array
  /** The used ring as u16: flags, idx, ..., avail_event at 2 + 4*size. */
  readonly used: Uint16Array
  /** The used ring as u32: element slot s is {id: [1+2s], len: [2+2s]}. */
  readonly usedElems: Uint32Array
}

/**
 * Checks the ring's size and placement and builds its views. Throws VirtqueueError EVQ_BAD_RING for a size that is
 * 0, not a power of 2 or > 32768 and for misaligned areas, EVQ_RING_OUTSIDE_MEMORY for an area not wholly inside one
 * mapped window.
 */
export function mapRing(mem: GuestMemory, cfg: SplitQueueConfig): RingViews {
  const { size } = cfg
  // virtio 1.2 §2.7: "Queue Size value is always a power of 2. The maximum Queue Size value is 32768."
  if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
    throw new VirtqueueError('EVQ_BAD_RING', `queue size ${size} is not a power of 2 in 1..${MAX_QUEUE_SIZE}`, { size })
  }
  const desc = locate(mem, 'descriptor table', cfg.descGpa, descTableBytes(size), DESC_TABLE_ALIGN)
  const avail = locate(mem, 'available ring', cfg.availGpa, availRingBytes(size), AVAIL_RING_ALIGN)
  const used = locate(mem, 'used ring', cfg.usedGpa, usedRingBytes(size), USED_RING_ALIGN)
  const b = (p: Placement): ArrayBufferLike => p.window.bytes.buffer
  return {
    desc: new DataView(b(desc), desc.byteOffset, descTableBytes(size)),
    descBytes: new Uint8Array(b(desc), desc.byteOffset, descTableBytes(size)),
    avail: new Uint16Array(b(avail), avail.byteOffset, availRingBytes(size) >>> 1),
    used: new Uint16Array(b(used), used.byteOffset, usedRingBytes(size) >>> 1),
    usedElems: new Uint32Array(b(used), used.byteOffset, (usedRingBytes(size) - 2) >>> 2),
  }
}

interface Placement {
  readonly window: GuestWindow
  /** Offset of the area inside window.bytes.buffer. */
  readonly byteOffset: number
}

function locate(mem: GuestMemory, what: string, gpa: number, bytes: number, align: number): Placement {
  const ctx = { area: what, gpa, bytes, align }
  // virtio 1.2 §2.7.1: the driver MUST align each part as the table in §2.7 says.
  if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa % align !== 0) {
    throw new VirtqueueError('EVQ_BAD_RING', `${what} at 0x${gpa.toString(16)} is not ${align}-byte aligned`, ctx)
  }
  const w = mem.findWindow(gpa, bytes)
  if (w < 0) {
    throw new VirtqueueError(
      'EVQ_RING_OUTSIDE_MEMORY',
      `${what} [0x${gpa.toString(16)}, +${bytes}) is not inside one mapped window of guest memory`,
      ctx,
    )
  }
  const window = mem.windows[w]
  const byteOffset = window.bytes.byteOffset + (gpa - window.gpa)
  // A region placed at an odd guest address would misalign the host view even when the GPA is aligned.
  if (byteOffset % align !== 0) {
    throw new VirtqueueError('EVQ_BAD_RING', `${what} is misaligned in the host mapping`, { ...ctx, byteOffset })
  }
  return { window, byteOffset }
}
