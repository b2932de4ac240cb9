/**
 * The contract between the vhost-user protocol engine and a device model (virtio-blk, in src/blk).
 * The engine owns sockets, fds, guest memory and ring placement; the device owns what requests
 * mean. Nothing here knows about blocks or tags.
 */
import type { GuestMemory, SplitQueue } from '../virtqueue/index.js'

/** A ring the device is serving. */
export interface DeviceQueue {
  /** The guest kicked (the kick eventfd was already drained). Process what the avail ring holds. */
  kick(): void
  /**
   * Stop taking chains from the ring. Resolves once every chain already taken has been completed
   * (used ring published), so the avail index can be reported; returns undefined when nothing
   * was in flight.
   */
  stop(): Promise<void> | undefined
}

/** Signals the guest that used buffers are ready (writes the call eventfd, when there is one). */
export type Notify = () => void

/** A virtio device served over vhost-user. */
export interface VhostUserDevice {
  /** Virtio feature bits offered to the frontend (the engine adds VHOST_USER_F_PROTOCOL_FEATURES). */
  readonly features: bigint
  /** Protocol feature bits this device needs on top of the engine's own (CONFIG for virtio-blk). */
  readonly protocolFeatures: bigint
  /** Number of virtqueues the device supports (GET_QUEUE_NUM). */
  readonly numQueues: number
  /** Config space bytes [offset, offset+size), or null when the range is not readable. */
  getConfig(offset: number, size: number): Uint8Array | null
  /** A config write from the frontend; false rejects it. */
  setConfig(offset: number, data: Uint8Array, flags: number): boolean
  /** Features the frontend acked (SET_FEATURES); called before any queue starts. */
  setFeatures(features: bigint): void
  /** Serve ring `index` over `vq` (indices already set) until stop(). */
  startQueue(index: number, vq: SplitQueue, mem: GuestMemory, notify: Notify): DeviceQueue
  /** The frontend went away or reset the device: forget negotiated state. */
  reset(): void
}
