/**
 * Split-virtqueue layout facts from virtio 1.2 §2.7: flag values, area sizes and alignments, the positions of the
 * ring fields inside host-endian typed-array views, and the wrap-safe event-index rule.
 *
 * Owns: constants and pure helpers only. Does not own memory access or validation (ring-views.ts, split-queue.ts).
 */

/** virtq_desc.flags: the buffer continues via `next` (virtio 1.2 §2.7.5). */
export const VIRTQ_DESC_F_NEXT = 1
/** virtq_desc.flags: the buffer is device write-only (virtio 1.2 §2.7.5). */
export const VIRTQ_DESC_F_WRITE = 2
/** virtq_desc.flags: the buffer holds a table of indirect descriptors (virtio 1.2 §2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4
/** virtq_used.flags: the device asks the driver not to kick (virtio 1.2 §2.7.10). */
export const VIRTQ_USED_F_NO_NOTIFY = 1
/** virtq_avail.flags: the driver asks the device not to interrupt (virtio 1.2 §2.7.7). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1
/** Largest queue size: the highest power of two that fits 16-bit indices (virtio 1.2 §2.7). */
export const MAX_QUEUE_SIZE = 32768
/**
 * Entries an indirect table may have, whatever the queue size. Linux's virtio_blk sizes its tables by
 * seg_max + 2, not by the ring (a 128-entry ring carries 256-entry tables when seg_max is 254), and
 * QEMU's devices and libvhost-user accept up to 1024 (VIRTQUEUE_MAX_SIZE) likewise; rejecting such a
 * table would fail a legitimate request.
 */
export const MAX_INDIRECT_ENTRIES = 1024
/** Bytes per descriptor (`struct virtq_desc`). */
export const DESC_SIZE = 16

/** Required alignment of the descriptor table (virtio 1.2 §2.7, table "Virtqueue Part"). */
export const DESC_TABLE_ALIGN = 16
/** Required alignment of the available ring. */
export const AVAIL_RING_ALIGN = 2
/** Required alignment of the used ring. */
export const USED_RING_ALIGN = 4

/** Bytes of the descriptor table for a queue of `size` entries. */
export function descTableBytes(size: number): number {
  return DESC_SIZE * size
}

/** Bytes of the available ring: flags, idx, ring[size], used_event. */
export function availRingBytes(size: number): number {
  return 6 + 2 * size
}

/** Bytes of the used ring: flags, idx, ring[size] of {id u32, len u32}, avail_event. */
export function usedRingBytes(size: number): number {
  return 6 + 8 * size
}

/** Index of avail.flags in a Uint16Array over the available ring. */
export const AVAIL_FLAGS = 0
/** Index of avail.idx in a Uint16Array over the available ring. */
export const AVAIL_IDX = 1
/** Index of avail.ring[0] in a Uint16Array over the available ring. */
export const AVAIL_RING = 2
/** Index of used_event (after avail.ring[size]) in a Uint16Array over the available ring. */
export function usedEventIndex(size: number): number {
  return AVAIL_RING + size
}

/** Index of used.flags in a Uint16Array over the used ring. */
export const USED_FLAGS = 0
/** Index of used.idx in a Uint16Array over the used ring. */
export const USED_IDX = 1
/** Index of avail_event (byte 4 + 8*size) in a Uint16Array over the used ring. */
export function availEventIndex(size: number): number {
  return 2 + 4 * size
}
/** Index of used.ring[slot].id in a Uint32Array over the used ring (byte 4 + 8*slot). */
export function usedElemIdIndex(slot: number): number {
  return 1 + 2 * slot
}

/**
 * The event-index rule (virtio 1.2 §2.7.7.2 and §2.7.10, Linux `vring_need_event`): having moved an index from
 * `oldIdx` to `newIdx`, notify the other side iff `eventIdx` lies in [oldIdx, newIdx). 16-bit wrap-safe.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff)
}

const TWO_POW_32 = 4294967296

/**
 * Encodes one little-endian `virtq_desc` at `byteOffset` of `view`. `addr` may be any integer below 2^64 (precise
 * below 2^53); the split into two u32 halves lets tests write hostile addresses.
 */
export function writeDescriptor(
  view: DataView,
  byteOffset: number,
  addr: number,
  len: number,
  flags: number,
  next: number,
): void {
  view.setUint32(byteOffset, addr % TWO_POW_32, true)
  view.setUint32(byteOffset + 4, Math.floor(addr / TWO_POW_32) % TWO_POW_32, true)
  view.setUint32(byteOffset + 8, len, true)
  view.setUint16(byteOffset + 12, flags, true)
  view.setUint16(byteOffset + 14, next, true)
}
