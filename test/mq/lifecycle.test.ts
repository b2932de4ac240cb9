import { describe, it, expect } from 'vitest'
import { BlkStatus, MqError, RqState, TagSet, GenDiskBuilder } from '../../src/mq/index.js'
import type { HwQueue, Operations, Request } from '../../src/mq/index.js'
import { codeOf, mustSubmit, setup } from './harness.js'

/** Wait for the setImmediate that drains a completion batch. */
const nextImmediate = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('exactly-once end', () => {
  it('throws EMQ_DOUBLE_END on a second end and leaves the freed tag as it was', () => {
    const h = setup({ queueDepth: 2 }, { completion: 'manual' })
    const rq = mustSubmit(h.hwq, h.disk)
    rq.endOk()
    expect(h.ended).toHaveLength(1)
    const err = (() => { try { rq.end(BlkStatus.IOERR) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(MqError)
    expect((err as MqError).code).toBe('EMQ_DOUBLE_END')
    expect(codeOf(() => rq.endOk())).toBe('EMQ_DOUBLE_END')
    expect(codeOf(() => rq.complete(BlkStatus.OK))).toBe('EMQ_DOUBLE_END')
    expect(h.ended).toHaveLength(1)
    expect(rq.state).toBe(RqState.Idle)
    expect(h.hwq.inFlight).toBe(0)
    // The free stack was not corrupted: both tags are handed out once each.
    const a = h.hwq.tryAllocRequest(h.disk)!
    const b = h.hwq.tryAllocRequest(h.disk)!
    expect(new Set([a.tag, b.tag]).size).toBe(2)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
  })

  it('throws EMQ_STALE_END for a generation whose tag was reused, and leaves the new request alone', () => {
    const h = setup({ queueDepth: 1 }, { completion: 'manual' })
    const rq = mustSubmit(h.hwq, h.disk)
    const oldGeneration = rq.generation
    h.driver.release()
    const reused = mustSubmit(h.hwq, h.disk)
    expect(reused).toBe(rq)
    expect(rq.isCurrent(oldGeneration)).toBe(false)
    expect(rq.isCurrent(rq.generation)).toBe(true)
    expect(codeOf(() => rq.end(BlkStatus.OK, oldGeneration))).toBe('EMQ_STALE_END')
    expect(codeOf(() => rq.complete(BlkStatus.OK, oldGeneration))).toBe('EMQ_STALE_END')
    expect(rq.state).toBe(RqState.Dispatched)
    expect(h.ended).toHaveLength(1)
    expect(h.hwq.inFlight).toBe(1)
    h.driver.release()
    expect(h.ended.map((e) => e.generation)).toEqual([oldGeneration, oldGeneration + 1])
  })

  it('throws EMQ_STALE_END rather than EMQ_DOUBLE_END when a stale handle ends a free tag', () => {
    const h = setup({ queueDepth: 1 })
    const rq = h.hwq.tryAllocRequest(h.disk)!
    const generation = rq.generation
    rq.endOk(generation)
    expect(codeOf(() => rq.endOk(generation))).toBe('EMQ_DOUBLE_END')
    expect(codeOf(() => rq.endOk(generation - 1))).toBe('EMQ_STALE_END')
  })

  it('refuses end() from inside the owner\'s onEnd for the same request', () => {
    const h = setup()
    let inner: string | undefined
    h.hwq.onEnd = (rq) => { inner = codeOf(() => rq.endOk()) }
    mustSubmit(h.hwq, h.disk)
    expect(inner).toBe('EMQ_DOUBLE_END')
    expect(h.hwq.inFlight).toBe(0)
  })

  it('frees the tag even if the owner\'s onEnd throws', () => {
    const h = setup({ queueDepth: 1 })
    h.hwq.onEnd = () => { throw new Error('owner bug') }
    const rq = h.hwq.tryAllocRequest(h.disk)!
    expect(() => rq.endOk()).toThrow('owner bug')
    expect(rq.state).toBe(RqState.Idle)
    expect(h.hwq.tryAllocRequest(h.disk)).toBe(rq)
  })
})

describe('dispatch', () => {
  it('hands the request to queueRq with isLast and reports the outcome through onEnd', () => {
    const h = setup()
    mustSubmit(h.hwq, h.disk, undefined, false)
    mustSubmit(h.hwq, h.disk, undefined, true)
    expect(h.driver.calls.map((c) => c.isLast)).toEqual([false, true])
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.OK, BlkStatus.OK])
  })

  it('ends a request the driver refuses with an error status, with that status', () => {
    const h = setup()
    h.driver.refuseNext(1, BlkStatus.NOTSUPP)
    const rq = mustSubmit(h.hwq, h.disk)
    expect(h.ended).toHaveLength(1)
    expect(h.ended[0].status).toBe(BlkStatus.NOTSUPP)
    expect(rq.inFlight).toBe(false)
  })

  it('ends a request the driver accepted and failed with the driver\'s status', () => {
    const h = setup()
    h.driver.failNext(1, BlkStatus.NOSPC)
    mustSubmit(h.hwq, h.disk)
    mustSubmit(h.hwq, h.disk)
    expect(h.ended.map((e) => e.status)).toEqual([BlkStatus.NOSPC, BlkStatus.OK])
  })

  it('rejects a request that is not freshly allocated (EMQ_NOT_STARTED)', () => {
    const h = setup({}, { completion: 'manual' })
    const idle = h.hwq.requests[3]
    expect(codeOf(() => h.hwq.dispatch(idle, true))).toBe('EMQ_NOT_STARTED')
    const rq = mustSubmit(h.hwq, h.disk)
    expect(codeOf(() => h.hwq.dispatch(rq, true))).toBe('EMQ_NOT_STARTED')
    expect(h.driver.calls).toHaveLength(1)
    expect(rq.state).toBe(RqState.Dispatched)
  })

  it('rejects a request of another hardware queue (EMQ_WRONG_QUEUE)', () => {
    const h = setup({ nrHwQueues: 2 })
    const rq = h.ts.hwQueues[1].tryAllocRequest(h.disk)!
    expect(codeOf(() => h.ts.hwQueues[0].dispatch(rq, true))).toBe('EMQ_WRONG_QUEUE')
    expect(rq.state).toBe(RqState.Allocated)
  })

  it('reports EMQ_DRIVER_CONTRACT when a driver ends a request and then refuses it', () => {
    const ops: Operations = { queueRq: (rq) => { rq.endOk(); return BlkStatus.IOERR } }
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 1, ops })
    const disk = new GenDiskBuilder().build(ts)
    const hwq = ts.hwQueues[0]
    const rq = hwq.tryAllocRequest(disk)!
    expect(codeOf(() => hwq.dispatch(rq, true))).toBe('EMQ_DRIVER_CONTRACT')
    expect(rq.inFlight).toBe(false)
    expect(hwq.inFlight).toBe(0)
  })

  it('lets a driver end synchronously inside queueRq while the owner dispatches from onRestart', () => {
    // The memory disk ends inline; the owner resumes on restart. queueRq must never nest.
    const h = setup({ queueDepth: 1 })
    let depth = 0
    let maxDepth = 0
    const queueRq = h.driver.queueRq.bind(h.driver)
    h.driver.queueRq = (rq: Request, isLast: boolean) => {
      depth++
      maxDepth = Math.max(maxDepth, depth)
      try { return queueRq(rq, isLast) } finally { depth-- }
    }
    let backlog = 5
    const kick = (q: HwQueue) => {
      while (backlog > 0) {
        const rq = q.tryAllocRequest(h.disk)
        if (rq === null) return
        backlog--
        q.dispatch(rq, backlog === 0)
      }
    }
    // An owner that re-enters its loop from onRestart (its re-entrancy guard is its own business).
    h.hwq.onRestart = () => kick(h.hwq)
    h.hwq.tryAllocRequest(h.disk)!.endOk() // nothing special: queue not stopped
    const held = h.hwq.tryAllocRequest(h.disk)!
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull() // stopped
    held.endOk() // restart → kick → 5 inline requests
    expect(backlog).toBe(0)
    expect(h.driver.calls).toHaveLength(5)
    expect(maxDepth).toBe(1)
    expect(h.hwq.inFlight).toBe(0)
  })

  it('never nests queueRq when a driver ends another request inside queueRq on a stopped queue', () => {
    // A driver that reaps older completions while submitting (ending A inside queueRq(B)); the
    // owner resumes on restart. The restart must wait until queueRq(B) has returned.
    const held: Request[] = []
    let depth = 0
    let maxDepth = 0
    const ops: Operations = {
      queueRq(rq) {
        depth++
        maxDepth = Math.max(maxDepth, depth)
        held.shift()?.endOk()
        held.push(rq)
        depth--
        return BlkStatus.OK
      },
    }
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 2, ops })
    const disk = new GenDiskBuilder().build(ts)
    const hwq = ts.hwQueues[0]
    hwq.dispatch(hwq.tryAllocRequest(disk)!, true) // A, held
    const b = hwq.tryAllocRequest(disk)!
    expect(hwq.tryAllocRequest(disk)).toBeNull() // stopped
    let restartedInsideQueueRq: boolean | null = null
    hwq.onRestart = () => {
      restartedInsideQueueRq = depth > 0
      hwq.dispatch(hwq.tryAllocRequest(disk)!, true) // C
    }
    hwq.dispatch(b, true)
    expect(restartedInsideQueueRq).toBe(false)
    expect(maxDepth).toBe(1)
    expect(held).toHaveLength(1) // B ended inside queueRq(C); C held
    expect(hwq.inFlight).toBe(1)
  })

  it('defers a dispatch made from inside onEnd until the end has returned', () => {
    const h = setup({ queueDepth: 2 })
    let depth = 0
    let maxDepth = 0
    const queueRq = h.driver.queueRq.bind(h.driver)
    h.driver.queueRq = (rq: Request, isLast: boolean) => {
      depth++
      maxDepth = Math.max(maxDepth, depth)
      try { return queueRq(rq, isLast) } finally { depth-- }
    }
    let chained = false
    const onEnd = h.hwq.onEnd
    h.hwq.onEnd = (rq) => {
      onEnd(rq)
      if (!chained) {
        chained = true
        mustSubmit(h.hwq, h.disk)
        expect(h.driver.calls).toHaveLength(1) // not yet
      }
    }
    mustSubmit(h.hwq, h.disk)
    expect(h.driver.calls).toHaveLength(2)
    expect(h.ended).toHaveLength(2)
    expect(maxDepth).toBe(1)
  })
})

describe('complete()', () => {
  it('defers to ops.complete in the completion batch, in completion order', async () => {
    const h = setup({}, { completion: 'manual', endVia: 'complete' })
    let batches = 0
    h.hwq.onCompletionBatchEnd = () => { batches++ }
    const a = mustSubmit(h.hwq, h.disk)
    const b = mustSubmit(h.hwq, h.disk)
    h.driver.release()
    expect(h.driver.completes).toBe(0)
    expect(h.ended).toHaveLength(0)
    expect(a.state).toBe(RqState.CompletePending)
    expect(codeOf(() => a.endOk())).toBe('EMQ_DOUBLE_END')
    expect(codeOf(() => a.complete(BlkStatus.OK))).toBe('EMQ_DOUBLE_END')
    await nextImmediate()
    expect(h.driver.completes).toBe(2)
    expect(h.ended.map((e) => e.tag)).toEqual([a.tag, b.tag])
    expect(batches).toBe(1)
    expect(h.hwq.inFlight).toBe(0)
  })

  it('carries the status given to complete()', async () => {
    const h = setup({}, { completion: 'manual', endVia: 'complete' })
    h.driver.failNext(1, BlkStatus.IOERR)
    mustSubmit(h.hwq, h.disk)
    h.driver.release()
    await nextImmediate()
    expect(h.ended[0].status).toBe(BlkStatus.IOERR)
  })

  it('can be drained early by the owner with runCompletions()', async () => {
    const h = setup({}, { completion: 'manual', endVia: 'complete' })
    mustSubmit(h.hwq, h.disk)
    h.driver.release()
    h.hwq.runCompletions()
    expect(h.ended).toHaveLength(1)
    await nextImmediate()
    expect(h.ended).toHaveLength(1)
  })

  it('ends with rq.status when the driver has no complete()', async () => {
    const held: Request[] = []
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 2, ops: { queueRq: (rq) => { held.push(rq); return BlkStatus.OK } } })
    const disk = new GenDiskBuilder().build(ts)
    const hwq = ts.hwQueues[0]
    const statuses: number[] = []
    hwq.onEnd = (rq) => { statuses.push(rq.status) }
    hwq.dispatch(hwq.tryAllocRequest(disk)!, true)
    held[0].complete(BlkStatus.PROTECTION)
    expect(statuses).toEqual([])
    await nextImmediate()
    expect(statuses).toEqual([BlkStatus.PROTECTION])
  })

  it('takes completions made during the batch into the same batch', async () => {
    const h = setup({}, { completion: 'manual' })
    const a = mustSubmit(h.hwq, h.disk)
    const b = mustSubmit(h.hwq, h.disk)
    let batches = 0
    h.hwq.onCompletionBatchEnd = () => { batches++ }
    const complete = h.driver.complete.bind(h.driver)
    h.driver.complete = (rq: Request) => {
      if (rq === a) b.complete(BlkStatus.OK)
      complete(rq)
    }
    a.complete(BlkStatus.OK)
    await nextImmediate()
    expect(h.ended.map((e) => e.tag)).toEqual([a.tag, b.tag])
    expect(batches).toBe(1)
  })

  it('is for the driver only: EMQ_NOT_DISPATCHED on an allocated or requeued request', () => {
    const h = setup({}, { completion: 'manual' })
    const allocated = h.hwq.tryAllocRequest(h.disk)!
    expect(codeOf(() => allocated.complete(BlkStatus.OK))).toBe('EMQ_NOT_DISPATCHED')
    h.driver.refuseNext(1)
    h.hwq.dispatch(allocated, true)
    expect(allocated.state).toBe(RqState.Requeued)
    expect(codeOf(() => allocated.complete(BlkStatus.OK))).toBe('EMQ_NOT_DISPATCHED')
    expect(allocated.state).toBe(RqState.Requeued)
  })

  it('restarts a stopped queue after the batch frees tags', async () => {
    const h = setup({ queueDepth: 1 }, { completion: 'manual', endVia: 'complete' })
    mustSubmit(h.hwq, h.disk)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    h.driver.release()
    expect(h.restarts).toEqual([])
    await nextImmediate()
    expect(h.restarts).toEqual([0])
  })
})
