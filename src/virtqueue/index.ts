/**
 * Public API of the virtqueue layer: guest memory and its translation, split rings (device and driver sides), chain
 * segments, ring layout constants, and the layer's error class. Knows the virtio spec; nothing of vhost-user or blk.
 */
export { VirtqueueError, type VirtqueueErrorCode } from './errors.js'
export {
  GuestMemory,
  DEFAULT_WINDOW_OVERLAP,
  DEFAULT_WINDOW_STRIDE,
  type Gpa,
  type Uva,
  type RegionSpec,
  type GuestWindow,
  type MapWindow,
  type GuestMemoryOptions,
} from './guest-memory.js'
export { DescChain } from './desc-chain.js'
export { SplitQueue, ChainError, type ChainErrorCode, type SplitQueueConfig } from './split-queue.js'
export { SplitQueueDriver, type DriverSegment, type SplitQueueDriverConfig } from './split-queue-driver.js'
export {
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  MAX_QUEUE_SIZE,
  MAX_INDIRECT_ENTRIES,
  DESC_SIZE,
  DESC_TABLE_ALIGN,
  AVAIL_RING_ALIGN,
  USED_RING_ALIGN,
  descTableBytes,
  availRingBytes,
  usedRingBytes,
  vringNeedEvent,
  writeDescriptor,
} from './layout.js'
