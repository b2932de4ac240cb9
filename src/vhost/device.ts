/**
 * The contract between the vhost-user protocol engine and a device model (virtio-blk, in src/blk).
 * The engine owns sockets, fds, guest memory and ring placement; the device owns what requests
 * mean. Nothing here knows about blocks or tags.
 *
 * Who watches the kick eventfd is the device's choice, made per ring when it starts: a queue served
 * on this thread leaves it to the engine (a Poller calls `kick()`, `notify` writes the call fd); a
 * queue served on another thread (an I/O thread) watches the kick fd and writes the call fd itself,
 * and says so by implementing `replaceEventfds`.
 */
import type { GuestMemory, SplitQueue, SplitQueueConfig } from '../virtqueue/index.js'

/** A ring the device is serving. */
export interface DeviceQueue {
  /**
   * Process what the avail ring holds. The engine calls it once when the ring starts (work may be
   * waiting) and, for a queue that leaves the kick fd to the engine, on every kick (the eventfd
   * already drained).
   */
  kick(): void
  /**
   * Stop taking chains from the ring. Resolves once every chain already taken has been completed
   * (used ring published) and the ring's `vq` holds the final nextAvail/nextUsed, so the avail
   * index can be reported; returns undefined when nothing was in flight.
   */
  stop(): Promise<void> | undefined
  /**
   * Present when the queue uses the ring's eventfds itself (it runs on another thread): the engine
   * then never polls the kick fd. The engine calls it when SET_VRING_KICK or SET_VRING_CALL
   * replaces an eventfd of the running ring, and closes the old fd only once the promise resolved
   * (the queue no longer touches it). The promise never rejects.
   */
  readonly replaceEventfds?: (kickFd: number, callFd: number) => Promise<void>
}

/** Signals the guest that used buffers are ready (writes the call eventfd, when there is one). */
export type Notify = () => void

/**
 * Everything a device needs to serve one ring: the engine's split queue over its mapping for a
 * queue served here, and what to rebuild it from for a queue served on another thread. Every fd
 * stays open until the queue's stop() resolved (or, for eventfds, a replaceEventfds resolved).
 */
export interface RingStart {
  /** Virtqueue index. */
  readonly index: number
  /** The device side of the ring over `mem`, nextAvail/nextUsed set. */
  readonly vq: SplitQueue
  /** Guest memory as this thread maps it. */
  readonly mem: GuestMemory
  /** The fd backing each of `mem.regions` (same order): another thread maps guest memory from these. */
  readonly regionFds: readonly number[]
  /** Where the ring lives and whether EVENT_IDX applies (what `vq` was built from). */
  readonly layout: Readonly<SplitQueueConfig>
  /** The kick eventfd (the guest signals new buffers). */
  readonly kickFd: number
  /** The call eventfd (-1: none, the guest polls). */
  readonly callFd: number
  /** Writes the call eventfd; bound once, for queues served on this thread. */
  readonly notify: Notify
  /**
   * The device cannot serve this ring any more (an I/O thread failed): the engine closes the
   * connection, logging `reason`. The queue's stop() still resolves.
   */
  readonly fail: (reason: Error) => void
}

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
  /** Serve a ring until stop(). */
  startQueue(ring: RingStart): DeviceQueue
  /** The frontend went away or reset the device: forget negotiated state. */
  reset(): void
}
