/**
 * A ring's two eventfds as the thread serving the ring uses them: the kick eventfd watched by a
 * Poller on this thread's loop (the counter drained, then `onKick`), the call eventfd written by
 * `notify`. The Vring uses one on the main thread; an I/O thread uses one per ring it serves.
 *
 * Owns the Poller only: the fds stay the Vring's, which closes them (after every thread that
 * used one let go of it).
 */
import * as native from '../native/index.js'

/** Kick watching and guest notification for one ring on this thread. */
export class RingEventfds {
  /** The kick eventfd watched (-1: none yet). */
  kickFd = -1
  /** The call eventfd `notify` writes (-1: none; the guest polls). */
  callFd = -1
  private poller: native.Poller | null = null
  private watching = false
  /** Bound once: the device calls it on the hot path to interrupt the guest. */
  readonly notify = (): void => {
    if (this.callFd >= 0) native.eventfdWrite(this.callFd, 1)
  }
  private readonly onReadable = (): void => {
    // Drain the counter first: kicks that arrive while we process re-arm the eventfd.
    native.eventfdRead(this.kickFd)
    this.onKick()
  }

  /** @param onKick - the guest kicked (called on this thread's loop) */
  constructor(private readonly onKick: () => void) {}

  /**
   * Watches `fd` from now on instead of the previous kick fd; watching stays on or off as it was.
   * Throws the Poller's error (an fd that cannot be polled) with nothing changed.
   */
  setKickFd(fd: number): void {
    const poller = new native.Poller(fd, this.onReadable)
    this.poller?.close()
    this.poller = poller
    this.kickFd = fd
    if (this.watching) poller.start()
  }

  /** Starts watching the kick fd (kicks sent meanwhile wait in the eventfd). */
  start(): void {
    this.poller?.start()
    this.watching = true
  }

  /** Stops watching; the kick fd keeps counting. */
  stop(): void {
    this.poller?.stop()
    this.watching = false
  }

  /** Releases the poller (before the kick fd is closed). */
  close(): void {
    this.poller?.close()
    this.poller = null
    this.watching = false
  }
}
