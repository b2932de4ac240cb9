/**
 * One vring's vhost-user state: size, addresses, base, the kick/call/err fds and the
 * started/enabled/running rules. Owns those fds and the kick poller.
 *
 * The rules (docs/interop/vhost-user.rst, "Starting and stopping rings"), kept in one place:
 *
 * | state    | how it is entered                                              | device serves it |
 * |----------|----------------------------------------------------------------|------------------|
 * | stopped  | initially; after GET_VRING_BASE; after a reset                  | no               |
 * | started  | SET_VRING_KICK once num, addr and a memory table are known      | only if enabled  |
 * | enabled  | SET_VRING_ENABLE 1, or from the start when PROTOCOL_FEATURES    | only if started  |
 * |          | was not negotiated                                             |                  |
 * | running  | started && enabled                                             | yes              |
 *
 * Kicks that arrive while a ring is started but disabled stay in the eventfd and the avail ring;
 * enabling it processes them (nothing is lost).
 */
import * as native from '../native/index.js'
import { SplitQueue, VirtqueueError, type GuestMemory } from '../virtqueue/index.js'
import type { DeviceQueue, VhostUserDevice } from './device.js'
import { VhostUserError, type VringAddr } from './messages.js'
import { closeFds } from './framing.js'

/** Largest ring the split-queue format allows (virtio 1.2 §2.7: Queue Size ≤ 32768). */
export const MAX_VRING_SIZE = 32768

/** Per-ring state of one connection. */
export class Vring {
  num = 0
  addr: VringAddr | null = null
  /** Next avail index to process when the ring (re)starts (SET_VRING_BASE, or where it stopped). */
  base = 0
  kickFd = -1
  callFd = -1
  errFd = -1
  enabled = false
  /** The split queue while started. */
  vq: SplitQueue | null = null
  private queue: DeviceQueue | null = null
  private kickPoller: native.Poller | null = null
  /** Bound once: the device calls it on the hot path to interrupt the guest. */
  readonly notify = (): void => {
    if (this.callFd >= 0) native.eventfdWrite(this.callFd, 1)
  }
  private readonly onKick = (): void => {
    // Drain the counter first: kicks that arrive while we process re-arm the eventfd.
    native.eventfdRead(this.kickFd)
    this.queue?.kick()
  }

  constructor(readonly index: number) {}

  get started(): boolean {
    return this.vq !== null
  }

  get running(): boolean {
    return this.queue !== null
  }

  /** Replaces the kick fd (ownership passes here); a started ring keeps running on the new one. */
  setKickFd(fd: number): void {
    const wasRunning = this.running
    this.kickPoller?.close()
    this.kickPoller = null
    if (this.kickFd >= 0) closeFds([this.kickFd])
    this.kickFd = fd
    this.kickPoller = new native.Poller(fd, this.onKick)
    if (wasRunning) this.kickPoller.start()
  }

  /** Replaces the call fd (-1: none; the guest then polls). */
  setCallFd(fd: number): void {
    if (this.callFd >= 0) closeFds([this.callFd])
    this.callFd = fd
  }

  setErrFd(fd: number): void {
    if (this.errFd >= 0) closeFds([this.errFd])
    this.errFd = fd
  }

  /** Whether SET_VRING_KICK may start the ring now. */
  canStart(mem: GuestMemory | null): mem is GuestMemory {
    return mem !== null && this.addr !== null && this.num !== 0 && this.kickFd >= 0
  }

  /**
   * Builds the split queue over `mem` and starts serving if enabled. `nextUsed` comes from the
   * used ring itself: after a reconnect the guest's ring is the truth. Throws VhostUserError
   * when the ring does not fit guest memory (the ring then stays stopped).
   */
  start(mem: GuestMemory, eventIdx: boolean, device: VhostUserDevice, nextUsed?: number): void {
    const addr = this.addr as VringAddr
    const descGpa = mem.uvaToGpa(addr.descUva)
    const availGpa = mem.uvaToGpa(addr.availUva)
    const usedGpa = mem.uvaToGpa(addr.usedUva)
    if (descGpa < 0 || availGpa < 0 || usedGpa < 0) {
      throw new VhostUserError('EVHOST_BAD_RING', `vring ${this.index}: an address is outside guest memory`)
    }
    let vq: SplitQueue
    try {
      vq = new SplitQueue(mem, { size: this.num, descGpa, availGpa, usedGpa, eventIdx })
    } catch (err) {
      if (err instanceof VirtqueueError) throw new VhostUserError('EVHOST_BAD_RING', `vring ${this.index}: ${(err as Error).message}`)
      throw err
    }
    vq.nextAvail = this.base
    vq.nextUsed = nextUsed ?? vq.readUsedIdx()
    this.vq = vq
    if (this.enabled) this.run(mem, device)
  }

  /** SET_VRING_ENABLE. Disabling stops taking chains; chains in flight still complete. */
  setEnabled(on: boolean, mem: GuestMemory | null, device: VhostUserDevice): void {
    this.enabled = on
    if (on && this.vq !== null && !this.running && mem !== null) this.run(mem, device)
    else if (!on && this.running) void this.pause()
  }

  /**
   * Stops the ring (GET_VRING_BASE, reset, disconnect): no more chains are taken; resolves once
   * those in flight completed. Afterwards `base` is where the next start resumes.
   */
  async stop(): Promise<void> {
    await this.pause()
    if (this.vq !== null) this.base = this.vq.nextAvail
    this.vq = null
  }

  /** Stops serving but keeps the queue (memory-table changes rebuild it). Returns the used index. */
  async suspend(): Promise<number> {
    await this.pause()
    const nextUsed = this.vq?.nextUsed ?? 0
    if (this.vq !== null) this.base = this.vq.nextAvail
    this.vq = null
    return nextUsed
  }

  /** Closes every fd and the poller; the ring must already be stopped. */
  dispose(): void {
    this.kickPoller?.close()
    this.kickPoller = null
    closeFds([this.kickFd, this.callFd, this.errFd].filter((fd) => fd >= 0))
    this.kickFd = this.callFd = this.errFd = -1
  }

  private run(mem: GuestMemory, device: VhostUserDevice): void {
    this.queue = device.startQueue(this.index, this.vq as SplitQueue, mem, this.notify)
    this.kickPoller?.start()
    // Work may already be waiting: kicks sent while the ring was disabled or before a restart.
    this.queue.kick()
  }

  private async pause(): Promise<void> {
    const queue = this.queue
    if (queue === null) return
    this.kickPoller?.stop()
    this.queue = null
    await queue.stop()
  }
}
