import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { BlkStatus, GenDiskBuilder, RqState, TagSet } from '../../src/mq/index.js'
import type { Operations, Request } from '../../src/mq/index.js'
import { mustSubmit, setup } from './harness.js'

beforeEach(() => {
  vi.useFakeTimers()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('request timeouts', () => {
  it('hands a request held past its deadline to ops.timeout and ends it with TIMEOUT on "done"', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'manual' })
    const rq = mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(99)
    expect(h.driver.timedOut).toEqual([])
    vi.advanceTimersByTime(1)
    expect(h.driver.timedOut).toEqual([rq])
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.TIMEOUT])
    expect(rq.inFlight).toBe(false)
    expect(vi.getTimerCount()).toBe(0) // nothing in flight: the scan is not re-armed
  })

  it('detects a timeout at most one scan period late', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(30)
    mustSubmit(h.hwq, h.disk) // deadline 130; the scan armed at 0 runs at 100, then 200
    vi.advanceTimersByTime(70)
    expect(h.ended).toHaveLength(1)
    vi.advanceTimersByTime(99)
    expect(h.ended).toHaveLength(1)
    vi.advanceTimersByTime(1)
    expect(h.ended).toHaveLength(2)
  })

  it('gives a new deadline on "reset-timer"', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'manual' })
    h.driver.timeoutVerdict = 'reset-timer'
    const rq = mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(350)
    expect(h.driver.timedOut).toEqual([rq, rq, rq])
    expect(rq.state).toBe(RqState.Dispatched)
    expect(h.ended).toEqual([])
    h.driver.release()
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.OK])
  })

  it('does not time out requests that ended in time', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'timer', timerMs: 50 })
    mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(1000)
    expect(h.driver.timedOut).toEqual([])
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.OK])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('lets a driver drop its own late completion after the timeout (isCurrent)', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'timer', timerMs: 500 })
    mustSubmit(h.hwq, h.disk)
    vi.advanceTimersByTime(100)
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.TIMEOUT])
    h.driver.completion = 'manual'
    h.driver.timeoutVerdict = 'reset-timer'
    const reused = mustSubmit(h.hwq, h.disk)
    expect(reused.tag).toBe(0)
    vi.advanceTimersByTime(400) // first completion arrives: stale, dropped
    expect(h.driver.lateCompletions).toBe(1)
    expect(h.ended).toHaveLength(1)
    expect(reused.state).toBe(RqState.Dispatched)
  })

  it('does not time out requests the driver does not hold (allocated, requeued)', () => {
    const h = setup({ timeoutMs: 100, queueDepth: 4 }, { completion: 'manual' })
    h.hwq.tryAllocRequest(h.disk)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 1 }) // held, arms the scan
    h.driver.refuseNext(1000)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 2 })
    vi.advanceTimersByTime(100)
    expect(h.driver.timedOut).toHaveLength(1)
    expect(h.ended.map((e) => [e.sector, e.status])).toEqual([[1, BlkStatus.TIMEOUT]])
    expect(h.hwq.inFlight).toBe(2)
  })

  it('does not end a request the handler ended itself', () => {
    const held: Request[] = []
    const ops: Operations = {
      queueRq: (rq) => { held.push(rq); return BlkStatus.OK },
      timeout: (rq) => { rq.end(BlkStatus.IOERR); return 'done' },
    }
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 1, ops, timeoutMs: 10 })
    const disk = new GenDiskBuilder().build(ts)
    const statuses: number[] = []
    ts.hwQueues[0].onEnd = (rq) => { statuses.push(rq.status) }
    ts.hwQueues[0].dispatch(ts.hwQueues[0].tryAllocRequest(disk)!, true)
    vi.advanceTimersByTime(10)
    expect(statuses).toEqual([BlkStatus.IOERR])
  })

  it('restarts a stopped queue when a timeout frees a tag', () => {
    const h = setup({ timeoutMs: 100, queueDepth: 1 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    vi.advanceTimersByTime(100)
    expect(h.restarts).toEqual([0])
  })

  it('never times out without an ops.timeout handler, and arms no timer', () => {
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 1, ops: { queueRq: () => BlkStatus.OK }, timeoutMs: 10 })
    const disk = new GenDiskBuilder().build(ts)
    const rq = ts.hwQueues[0].tryAllocRequest(disk)!
    ts.hwQueues[0].dispatch(rq, true)
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(1000)
    expect(rq.state).toBe(RqState.Dispatched)
    expect(rq.deadline).toBe(0)
  })

  it('never times out with timeoutMs 0', () => {
    const h = setup({ timeoutMs: 0 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(60_000)
    expect(h.driver.timedOut).toEqual([])
  })

  it('stops the scan on destroy', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    h.driver.release()
    expect(vi.getTimerCount()).toBe(1)
    h.ts.destroy()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('uses an unref\'d timer so an idle process can exit', () => {
    const h = setup({ timeoutMs: 100 }, { completion: 'manual' })
    const spy = vi.spyOn(globalThis, 'setTimeout')
    mustSubmit(h.hwq, h.disk)
    const timer = spy.mock.results[0].value as NodeJS.Timeout
    expect(timer.hasRef()).toBe(false)
    h.driver.release()
  })
})
