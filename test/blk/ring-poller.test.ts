/**
 * RingPoller on its own, with queues that count what they are asked: the window opens only after
 * kicks that came soon after the thread slept, doubles up to the maximum, closes after a long
 * sleep; a polled queue with work is run, one without work for a whole window is told to wait for
 * kicks again; polling off means never polled.
 */
import { describe, expect, it } from 'vitest'
import { RingPoller, type PolledQueue } from '../../src/blk/ring-poller.js'

class FakeQueue implements PolledQueue {
  work = 0
  polls = 0
  ended = 0
  constructor(private readonly poller: RingPoller) {}
  hasWork(): boolean {
    return this.work > 0
  }
  poll(): void {
    this.work--
    this.polls++
    this.poller.offer(this)
  }
  /** As BlkQueue: re-enabling notifications finds what arrived meanwhile and takes it. */
  endPolling(): void {
    this.ended++
    if (this.work > 0) this.poll()
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** The thread sleeps and a kick wakes it at once: the window opens (4 µs). */
function quickKick(poller: RingPoller, queue: PolledQueue): void {
  expect(poller.offer(queue)).toBe(false)
  poller.woke()
}

describe('RingPoller', () => {
  it('with a maximum of 0 never polls', () => {
    const poller = new RingPoller(0)
    const q = new FakeQueue(poller)
    quickKick(poller, q)
    expect(poller.offer(q)).toBe(false)
    expect(poller.window).toBe(0)
  })

  it('opens the window after a quick kick; kicks while polled do not move it', () => {
    const poller = new RingPoller(50_000)
    const q = new FakeQueue(poller)
    quickKick(poller, q)
    expect(poller.window).toBe(4)
    expect(poller.offer(q)).toBe(true)
    // A kick while polled (the guest kicked anyway) is not a wake from sleep.
    poller.woke()
    expect(poller.window).toBe(4)
    poller.forget(q)
  })

  it('grows 4, 8, 16, 32 then the maximum with each quick wake after a sleep, and closes after a long sleep', async () => {
    const poller = new RingPoller(50_000) // 50 ms: the test's timers stay well inside it
    const q = new FakeQueue(poller)
    const windows: number[] = []
    poller.offer(q) // sleeps: window 0
    for (let i = 0; i < 5; i++) {
      poller.woke()
      windows.push(poller.window)
      poller.offer(q)
      // Let the window close without work: endPolling, and the thread sleeps.
      while (q.ended === i) await sleep(1)
    }
    expect(windows).toEqual([4, 8, 16, 32, 64])
    await sleep(80)
    poller.woke()
    expect(poller.window).toBe(0)
  })

  it('runs a polled queue while it has work, and tells it to wait for kicks once a window passes without', async () => {
    const poller = new RingPoller(50_000)
    const q = new FakeQueue(poller)
    quickKick(poller, q)
    q.work = 3
    expect(poller.offer(q)).toBe(true)
    while (q.work > 0 || q.ended === 0) await sleep(1)
    const ended = q.ended
    await sleep(5)
    expect(q.polls).toBe(3)
    expect(q.ended).toBe(ended) // asleep: nothing polls it any more
  })

  it('forgets a stopped queue', async () => {
    const poller = new RingPoller(50_000)
    const q = new FakeQueue(poller)
    quickKick(poller, q)
    poller.offer(q)
    poller.forget(q)
    q.work = 1
    await sleep(10)
    expect(q.polls).toBe(0)
    expect(q.ended).toBe(0)
  })
})
