/**
 * What the virtio-blk layer keeps per preallocated mq Request (`rq.owner`): the descriptor chain
 * the request came from, where its status byte lives, and which queue must complete it.
 * Built once per tag by {@link initBlkRequest}; reused for every I/O on that tag.
 */
import type { Request } from '../mq/index.js'
import { DescChain } from '../virtqueue/index.js'
import type { BlkQueue } from './queue.js'

/** Per-request virtio state. */
export class BlkRequestState {
  /** The chain as walked from the ring (segments into guest memory). */
  readonly chain: DescChain
  /** The queue that popped the chain and must push it to its used ring. */
  queue: BlkQueue | null = null
  /** Window index and offset of the status byte, or -1 when the chain has no writable byte. */
  statusWindow = -1
  statusOffset = 0

  constructor(chainCapacity: number) {
    this.chain = new DescChain(chainCapacity)
  }
}

/**
 * Descriptor segments a chain may have: the data segments the mq layer allows, the header and
 * status descriptors, and a few pieces split where a buffer crosses a mapping window.
 */
export function chainCapacityFor(maxDataSegments: number): number {
  return maxDataSegments + 2 + 4
}

/**
 * The TagSet `initRequest` owner hook: gives each preallocated request its virtio state. The
 * chain holds as many segments as the request does (mq's `maxSegments`).
 */
export function initBlkRequest(rq: Request): void {
  rq.owner = new BlkRequestState(rq.segBuffer.length)
}

/** The virtio state of a request built by {@link initBlkRequest}. */
export function blkState(rq: Request): BlkRequestState {
  return rq.owner as BlkRequestState
}
