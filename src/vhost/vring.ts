/**
 * One vring's vhost-user state: size, addresses, base, the kick/call/err fds and the
 * started/enabled/running rules. Owns those fds and, for queues served on this thread, their use
 * (RingEventfds).
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
 *
 * Eventfds and threads: the device decides who watches the kick fd (see DeviceQueue). For a queue
 * served elsewhere the poller here is never started, and an eventfd the frontend replaces is
 * closed only once the queue let go of it, also while a stopped queue still drains (its
 * completions signal the call fd). A ring disabled while its requests drain is enabled again only
 * once they have: the next queue starts from the indices the last one ended with.
 */
import { SplitQueue, VirtqueueError, type GuestMemory, type SplitQueueConfig } from '../virtqueue/index.js'
import type { DeviceQueue, VhostUserDevice } from './device.js'
import { VhostUserError, type VringAddr } from './messages.js'
import { closeFds } from './framing.js'
import { RingEventfds } from './ring-eventfds.js'

/** Largest ring the split-queue format allows (virtio 1.2 §2.7: Queue Size ≤ 32768). */
export const MAX_VRING_SIZE = 32768

/** Per-ring state of one connection. */
export class Vring {
  num = 0
  addr: VringAddr | null = null
  /** Next avail index to process when the ring (re)starts (SET_VRING_BASE, or where it stopped). */
  base = 0
  errFd = -1
  enabled = false
  /** The split queue while started. */
  vq: SplitQueue | null = null
  /** What `vq` was built from, while started. */
  private layout: SplitQueueConfig | null = null
  private mem: GuestMemory | null = null
  private regionFds: readonly number[] = []
  private queue: DeviceQueue | null = null
  /** Settles when the last queue stopped by a disable has drained; null when none is draining. */
  private pausing: Promise<void> | null = null
  /** That queue while it drains: its completions still signal the call fd. */
  private draining: DeviceQueue | null = null
  /** The kick and call fds, and their use when the queue runs on this thread. */
  private readonly eventfds = new RingEventfds(() => this.queue?.kick())

  /**
   * @param device - serves the ring while it runs
   * @param fail - closes the connection when the device can no longer serve the ring
   */
  constructor(
    readonly index: number,
    private readonly device: VhostUserDevice,
    private readonly fail: (reason: Error) => void,
  ) {}

  get started(): boolean {
    return this.vq !== null
  }

  get running(): boolean {
    return this.queue !== null
  }

  /** The kick eventfd (-1: not sent yet). */
  get kickFd(): number {
    return this.eventfds.kickFd
  }

  /** The call eventfd (-1: none). */
  get callFd(): number {
    return this.eventfds.callFd
  }

  /**
   * Replaces the kick fd (ownership passes here); a running ring keeps running on the new one. A
   * promise means the old fd is closed once the queue let go of it. An fd that cannot be polled
   * is closed and refused (the ring goes on with the old one).
   */
  setKickFd(fd: number): Promise<void> | undefined {
    const old = this.kickFd
    try {
      // The poller is made now, also for a queue served elsewhere: a bad fd is refused here.
      this.eventfds.setKickFd(fd)
    } catch (err) {
      closeFds([fd])
      throw err
    }
    const queue = this.queue ?? this.draining
    if (queue?.replaceEventfds !== undefined) return queue.replaceEventfds(fd, this.callFd).then(() => closeFds([old]))
    if (old >= 0) closeFds([old])
    return undefined
  }

  /** Replaces the call fd (-1: none; the guest then polls). A promise: as for setKickFd. */
  setCallFd(fd: number): Promise<void> | undefined {
    const old = this.callFd
    this.eventfds.callFd = fd
    const queue = this.queue ?? this.draining
    if (queue?.replaceEventfds !== undefined) {
      return queue.replaceEventfds(this.kickFd, fd).then(() => {
        if (old >= 0) closeFds([old])
      })
    }
    if (old >= 0) closeFds([old])
    return undefined
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
   * Builds the split queue over `mem` (whose regions `regionFds` back, in order) and starts
   * serving if enabled. `nextUsed` comes from the used ring itself: after a reconnect the guest's
   * ring is the truth. Throws VhostUserError when the ring does not fit guest memory (the ring then
   * stays stopped).
   */
  start(mem: GuestMemory, regionFds: readonly number[], eventIdx: boolean, nextUsed?: number): void {
    const addr = this.addr as VringAddr
    const descGpa = mem.uvaToGpa(addr.descUva)
    const availGpa = mem.uvaToGpa(addr.availUva)
    const usedGpa = mem.uvaToGpa(addr.usedUva)
    if (descGpa < 0 || availGpa < 0 || usedGpa < 0) {
      throw new VhostUserError('EVHOST_BAD_RING', `vring ${this.index}: an address is outside guest memory`)
    }
    const layout = { size: this.num, descGpa, availGpa, usedGpa, eventIdx }
    let vq: SplitQueue
    try {
      vq = new SplitQueue(mem, layout)
    } catch (err) {
      if (err instanceof VirtqueueError) throw new VhostUserError('EVHOST_BAD_RING', `vring ${this.index}: ${(err as Error).message}`)
      throw err
    }
    vq.nextAvail = this.base
    vq.nextUsed = nextUsed ?? vq.readUsedIdx()
    this.vq = vq
    this.layout = layout
    this.mem = mem
    this.regionFds = regionFds
    if (this.enabled) this.run()
  }

  /**
   * SET_VRING_ENABLE. Disabling stops taking chains; chains in flight still complete. Enabling
   * while they do waits for them (the promise).
   */
  setEnabled(on: boolean): Promise<void> | undefined {
    this.enabled = on
    if (!on) {
      if (this.running) void this.pause()
      return undefined
    }
    if (this.pausing !== null) return this.pausing.then(() => this.resume())
    this.resume()
    return undefined
  }

  /**
   * Stops the ring (GET_VRING_BASE, reset, disconnect): no more chains are taken; resolves once
   * those in flight completed. Afterwards `base` is where the next start resumes.
   */
  async stop(): Promise<void> {
    await this.pause()
    if (this.vq !== null) this.base = this.vq.nextAvail
    this.forget()
  }

  /** Stops serving but keeps the queue (memory-table changes rebuild it). Returns the used index. */
  async suspend(): Promise<number> {
    await this.pause()
    const nextUsed = this.vq?.nextUsed ?? 0
    if (this.vq !== null) this.base = this.vq.nextAvail
    this.forget()
    return nextUsed
  }

  /** Closes every fd and the poller; the ring must already be stopped. */
  dispose(): void {
    this.eventfds.close()
    closeFds([this.kickFd, this.callFd, this.errFd].filter((fd) => fd >= 0))
    this.eventfds.kickFd = this.eventfds.callFd = this.errFd = -1
  }

  private forget(): void {
    this.vq = null
    this.layout = null
    this.mem = null
    this.regionFds = []
  }

  private resume(): void {
    if (this.enabled && this.vq !== null && !this.running) this.run()
  }

  private run(): void {
    const queue = this.device.startQueue({
      index: this.index,
      vq: this.vq as SplitQueue,
      mem: this.mem as GuestMemory,
      regionFds: this.regionFds,
      layout: this.layout as SplitQueueConfig,
      kickFd: this.kickFd,
      callFd: this.callFd,
      notify: this.eventfds.notify,
      fail: this.fail,
    })
    this.queue = queue
    if (queue.replaceEventfds === undefined) this.eventfds.start()
    // Work may already be waiting: kicks sent while the ring was disabled or before a restart.
    queue.kick()
  }

  /** Stops the running queue, if any; settles when the last stopped queue has drained. */
  private pause(): Promise<void> {
    const queue = this.queue
    if (queue !== null) {
      this.eventfds.stop()
      this.queue = null
      const stopped = queue.stop()
      if (stopped !== undefined) {
        const pausing: Promise<void> = stopped.then(() => {
          if (this.pausing !== pausing) return
          this.pausing = null
          this.draining = null
        })
        this.pausing = pausing
        this.draining = queue
      }
    }
    return this.pausing ?? Promise.resolve()
  }
}
