/**
 * Public API of the userspace vhost-user-blk front-end: connect to any vhost-user-blk back-end
 * (ours, qemu-storage-daemon, SPDK) and submit virtio-blk requests without a VM, or drive it with
 * the load generator.
 */
export { VhostUserBlkClient, type ClientOptions, type RawOptions, type RequestOptions } from './client.js'
export { VhostUserClientError, type VhostUserClientErrorCode } from './errors.js'
export { STATUS_NOT_WRITTEN, type SectorRange } from './blk-request.js'
export { GuestRam, UVA_BASE, REGION_GAP } from './guest-ram.js'
export type { Reply } from './channel.js'
export type { RingLease, RingOwner } from './queue.js'
export { LatencyHistogram, MAX_LATENCY_NS } from './latency.js'
export { LOAD_PATTERNS, loadMemoryBytes, runLoad, type LoadOptions, type LoadPattern, type LoadResult } from './load.js'
