import { describe, it, expect, afterEach, vi } from 'vitest'
import fc from 'fast-check'
import { BlkStatus, RqState } from '../../src/mq/index.js'
import type { Request } from '../../src/mq/index.js'
import { codeOf, mustSubmit, setup } from './harness.js'

afterEach(() => {
  vi.useRealTimers()
})

/** Submit `n` requests with sectors 0..n-1 (sector numbers make the order visible). */
function submitSeries(h: ReturnType<typeof setup>, n: number): Request[] {
  const out: Request[] = []
  for (let i = 0; i < n; i++) out.push(mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = i }, i === n - 1))
  return out
}

/** Sectors the driver accepted, in order. */
const accepted = (h: ReturnType<typeof setup>) => h.driver.calls.filter((c) => c.returned === BlkStatus.OK).map((c) => c.sector)

describe('RESOURCE requeue', () => {
  it('keeps refused requests, in order, ahead of new work on the next dispatch', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    h.driver.refuseNext(2)
    const [first] = submitSeries(h, 2)
    // 0 refused; on the next dispatch 0 is retried first (refused again) and 1 queues behind it.
    expect(first.state).toBe(RqState.Requeued)
    expect(h.hwq.requeued).toBe(2)
    expect(h.driver.calls.map((c) => c.sector)).toEqual([0, 0])
    expect(h.ended).toHaveLength(0)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 2 })
    expect(accepted(h)).toEqual([0, 1, 2])
    expect(h.driver.calls.map((c) => c.isLast)).toEqual([false, false, false, false, true])
    expect(h.hwq.requeued).toBe(0)
  })

  it('retries the list on commit()', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    h.driver.refuseNext(2)
    submitSeries(h, 2)
    expect(h.hwq.requeued).toBe(2)
    const commits = h.driver.commits
    h.hwq.commit()
    expect(accepted(h)).toEqual([0, 1])
    expect(h.driver.commits).toBe(commits + 1)
  })

  it('retries the list when a request of the queue ends', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 100 })
    h.driver.refuseNext(2)
    submitSeries(h, 2)
    expect(accepted(h)).toEqual([100])
    h.driver.release(1)
    expect(accepted(h)).toEqual([100, 0, 1])
    // Retried by mq on its own: the last one is flagged last, so no commit is needed.
    expect(h.driver.calls.at(-1)!.isLast).toBe(true)
  })

  it('stops at the first request the driver refuses again and keeps the rest behind it', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    h.driver.refuseNext(4)
    submitSeries(h, 3) // 0 is refused on each of the three dispatches; 1 and 2 wait behind it, never tried
    expect(h.hwq.requeued).toBe(3)
    h.hwq.commit() // fourth refusal
    expect(accepted(h)).toEqual([])
    expect(h.driver.calls.map((c) => c.sector)).toEqual([0, 0, 0, 0])
    h.hwq.commit()
    expect(accepted(h)).toEqual([0, 1, 2])
  })

  it('commits on its own when a retry run told the driver more would follow and then stopped', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 100 })
    h.driver.refuseNext(2)
    submitSeries(h, 2)
    // On the retry triggered by an end: 0 accepted with isLast=false, then 1 refused again.
    const queueRq = h.driver.queueRq.bind(h.driver)
    let n = 0
    h.driver.queueRq = (rq: Request, isLast: boolean) => (++n === 2 ? BlkStatus.RESOURCE : queueRq(rq, isLast))
    const commits = h.driver.commits
    h.driver.release(1)
    expect(accepted(h)).toEqual([100, 0])
    expect(h.driver.calls.at(-1)!.isLast).toBe(false)
    expect(h.driver.commits).toBe(commits + 1)
  })

  it('retries after requeueDelayMs when nothing else happens', () => {
    vi.useFakeTimers()
    const h = setup({ queueDepth: 8, requeueDelayMs: 5 }, { completion: 'manual' })
    h.driver.refuseNext(2)
    submitSeries(h, 1)
    vi.advanceTimersByTime(4)
    expect(accepted(h)).toEqual([])
    vi.advanceTimersByTime(1) // refused a second time: re-armed
    expect(accepted(h)).toEqual([])
    vi.advanceTimersByTime(5)
    expect(accepted(h)).toEqual([0])
    expect(vi.getTimerCount()).toBe(1) // only the timeout scan is left
  })

  it('restarts a stopped queue only after the requeue list was retried', () => {
    const h = setup({ queueDepth: 2 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 100 })
    h.driver.refuseNext(1)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 0 })
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    let acceptedAtRestart: number[] = []
    h.hwq.onRestart = () => { acceptedAtRestart = accepted(h) }
    h.driver.release(1)
    expect(acceptedAtRestart).toEqual([100, 0])
  })

  it('lets the owner end a requeued request, which leaves the list', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    h.driver.refuseNext(100) // the driver stays busy: every retry (on each dispatch and end) is refused
    const [a, b, c] = submitSeries(h, 3)
    b.end(BlkStatus.IOERR)
    expect(h.ended.map((e) => e.sector)).toEqual([1])
    expect(h.hwq.requeued).toBe(2)
    a.end(BlkStatus.IOERR)
    c.end(BlkStatus.IOERR)
    expect(h.hwq.requeued).toBe(0)
    h.hwq.commit()
    expect(accepted(h)).toEqual([])
    expect(h.hwq.inFlight).toBe(0)
  })

  it('ends with the refused status when the driver refuses with an error', () => {
    const h = setup({ queueDepth: 8 }, { completion: 'manual' })
    h.driver.refuseNext(2)
    submitSeries(h, 2)
    h.driver.refuseNext(1, BlkStatus.IOERR)
    h.hwq.commit()
    expect(h.ended.map((e) => [e.sector, e.status])).toEqual([[0, BlkStatus.IOERR]])
    expect(accepted(h)).toEqual([1])
  })
})

describe('requeue order (property)', () => {
  it('the driver accepts requests in submission order and each ends exactly once, whatever it refuses', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.array(fc.oneof(
        fc.constant({ kind: 'submit' as const, n: 0 }),
        fc.record({ kind: fc.constant('refuse' as const), n: fc.integer({ min: 0, max: 4 }) }),
        fc.constant({ kind: 'release' as const, n: 0 }),
        fc.constant({ kind: 'commit' as const, n: 0 }),
        fc.constant({ kind: 'tick' as const, n: 0 }),
      ), { maxLength: 100 }),
      (depth, cmds) => {
        vi.useFakeTimers()
        const h = setup({ queueDepth: depth, requeueDelayMs: 1 }, { completion: 'manual' })
        let submitted = 0
        for (const { kind, n } of cmds) {
          if (kind === 'submit') {
            const sector = submitted
            if (h.hwq.inFlight < depth) {
              mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = sector })
              submitted++
            }
          } else if (kind === 'refuse') {
            h.driver.refuseNext(n)
          } else if (kind === 'release') {
            h.driver.release(1)
          } else if (kind === 'commit') {
            h.hwq.commit()
          } else {
            vi.advanceTimersByTime(1)
          }
        }
        h.driver.refuseNext(0)
        for (let i = 0; i < 10 && h.hwq.inFlight > 0; i++) {
          h.hwq.commit()
          h.driver.release()
        }
        vi.useRealTimers()
        expect(h.hwq.inFlight).toBe(0)
        expect(accepted(h)).toEqual(Array.from({ length: submitted }, (_, i) => i))
        expect(h.ended.map((e) => e.sector).sort((a, b) => a - b)).toEqual(Array.from({ length: submitted }, (_, i) => i))
      },
    ), { numRuns: 200 })
  })
})

describe('driver requeue()', () => {
  it('puts a request the driver held back on the list, behind anything already there', () => {
    vi.useFakeTimers()
    const h = setup({ queueDepth: 8, requeueDelayMs: 3 }, { completion: 'manual' })
    h.driver.refuseNext(2)
    submitSeries(h, 1) // b: refused, waiting on the list
    h.driver.refuseNext(0)
    h.hwq.commit()
    const [a] = h.driver.heldRequests()
    h.driver.refuseNext(1)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.sector = 1 }) // refused: on the list
    h.driver.requeueHeld(1) // a transient failure: the driver gives a back, behind 1
    expect(a.state).toBe(RqState.Requeued)
    expect(codeOf(() => a.requeue())).toBe('EMQ_NOT_DISPATCHED')
    vi.advanceTimersByTime(3)
    expect(accepted(h)).toEqual([0, 1, 0])
    expect(a.state).toBe(RqState.Dispatched)
  })

  it('refuses requeue() of a request the driver does not hold', () => {
    const h = setup()
    const rq = h.hwq.tryAllocRequest(h.disk)!
    expect(codeOf(() => rq.requeue())).toBe('EMQ_NOT_DISPATCHED')
    rq.endOk()
    expect(codeOf(() => rq.requeue())).toBe('EMQ_NOT_DISPATCHED')
  })
})
