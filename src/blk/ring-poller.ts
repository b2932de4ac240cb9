/**
 * Adaptive polling of the avail rings served on one thread, as QEMU's AioContext polls (its
 * poll-max-ns): after a batch, a queue keeps the guest's kicks suppressed and is watched by
 * re-reading avail.idx for a short window; only when nothing came in that window are its
 * notifications re-enabled and the thread sleeps on the kick eventfds. A guest that keeps the
 * ring busy then never pays an eventfd write to kick, nor the server a wakeup to notice.
 *
 * The window adapts per thread, as QEMU's does: it starts at 0 (no polling); when a kick comes
 * soon enough after the thread went to sleep that a window of at most `maxUs` would have caught
 * it, the window doubles (from 4 µs) up to `maxUs`; when the sleep lasted longer than `maxUs`,
 * polling would not have helped and the window goes back to 0. So an idle server, or a slow
 * guest (TCG), costs no polling at all.
 *
 * Polling runs on the event loop, never blocking it for long: a check of the rings every turn
 * (setImmediate) and, within a turn, a spin of at most SLICE_MS, so sockets, completions and
 * timers are still served between slices. Owns the window and the list of polled queues; the
 * queues own their rings and notification state.
 */

/** What the poller needs of a queue. */
export interface PolledQueue {
  /** The ring has chains to take (and the queue can take them). */
  hasWork(): boolean
  /** Take them: drain, dispatch, and offer itself for polling again. */
  poll(): void
  /** The window closed: re-enable the guest's kicks (taking what arrived meanwhile). */
  endPolling(): void
}

/** Longest spin within one turn of the event loop, in ms. */
const SLICE_MS = 0.02
/** The first window after polling was off, in µs (QEMU starts at 4 µs too). */
const FIRST_WINDOW_US = 4

/** Polls the rings of one thread. */
export class RingPoller {
  private readonly polled: PolledQueue[] = []
  /** Current window in µs (0: do not poll). */
  private windowUs = 0
  /** When a polled queue last had work (performance.now() ms). */
  private lastWorkMs = 0
  /** When the thread last went to sleep on the kick eventfds (ms), or -1. */
  private sleptAtMs = -1
  private scheduled = false
  private readonly tick = (): void => this.run()

  /** @param maxUs - longest window in µs; 0 turns polling off */
  constructor(private readonly maxUs: number) {}

  /**
   * A queue finished a batch: true when it is polled from now on (its kicks stay suppressed), false
   * when the window is closed and it must re-enable its notifications itself.
   */
  offer(queue: PolledQueue): boolean {
    const now = performance.now()
    if (this.windowUs === 0) {
      this.sleptAtMs = now
      return false
    }
    if (!this.polled.includes(queue)) this.polled.push(queue)
    this.lastWorkMs = now
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.tick)
    }
    return true
  }

  /** A guest kick woke the thread: adapt the window to how long it slept. */
  woke(): void {
    if (this.sleptAtMs < 0 || this.maxUs === 0) return
    const sleptUs = (performance.now() - this.sleptAtMs) * 1000
    this.sleptAtMs = -1
    if (sleptUs > this.maxUs) this.windowUs = 0
    else if (this.windowUs < this.maxUs) this.windowUs = Math.min(this.maxUs, this.windowUs === 0 ? FIRST_WINDOW_US : 2 * this.windowUs)
  }

  /** The queue stops: poll it no more (its notifications are its own business). */
  forget(queue: PolledQueue): void {
    const i = this.polled.indexOf(queue)
    if (i >= 0) this.polled.splice(i, 1)
  }

  /** Current window in µs (0: polling off), for tests and logs. */
  get window(): number {
    return this.windowUs
  }

  private run(): void {
    this.scheduled = false
    const polled = this.polled
    const sliceEnd = performance.now() + SLICE_MS
    for (;;) {
      for (let i = 0; i < polled.length; i++) {
        // poll() offers the queue again, which moves lastWorkMs.
        if (polled[i].hasWork()) polled[i].poll()
      }
      const now = performance.now()
      if (polled.length === 0) return
      if ((now - this.lastWorkMs) * 1000 > this.windowUs) return this.sleep(now)
      if (now >= sliceEnd) break
    }
    this.scheduled = true
    setImmediate(this.tick)
  }

  /** Nothing came within the window: every polled queue goes back to waiting for kicks. */
  private sleep(now: number): void {
    const queues = this.polled.splice(0)
    this.sleptAtMs = now
    for (const q of queues) q.endPolling()
  }
}
