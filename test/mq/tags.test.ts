import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { BlkStatus, EMPTY_SEGMENT, ReqFlag, ReqOp, RqState } from '../../src/mq/index.js'
import type { Request } from '../../src/mq/index.js'
import { mustSubmit, setSegments, setup } from './harness.js'

describe('tag allocation', () => {
  it('hands out a started request: fresh generation, allocated, disk set, idle values', () => {
    const h = setup()
    const before = h.hwq.requests.map((rq) => rq.generation)
    const rq = h.hwq.tryAllocRequest(h.disk)!
    expect(rq.state).toBe(RqState.Allocated)
    expect(rq.inFlight).toBe(true)
    expect(rq.disk).toBe(h.disk)
    expect(rq.generation).toBe(before[rq.tag] + 1)
    expect(h.hwq.inFlight).toBe(1)
  })

  it('never hands out a tag twice (random alloc / end / dispatch sequences)', () => {
    // Plain checks inside the loop: vitest's expect is too slow for tens of thousands of steps.
    const check = (ok: boolean, what: string) => { if (!ok) throw new Error(what) }
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.array(fc.record({ kind: fc.constantFrom('alloc', 'end', 'dispatch', 'release'), pick: fc.nat() }), { maxLength: 200 }),
      (depth, cmds) => {
        const h = setup({ queueDepth: depth }, { completion: 'manual' })
        const owned: Request[] = [] // allocated, not yet dispatched
        const live = new Set<number>()
        for (const { kind, pick } of cmds) {
          if (kind === 'alloc') {
            const rq = h.hwq.tryAllocRequest(h.disk)
            if (rq === null) {
              check(live.size === depth && h.hwq.stopped, 'null only when every tag is busy')
            } else {
              check(!live.has(rq.tag), `tag ${rq.tag} handed out twice`)
              live.add(rq.tag)
              owned.push(rq)
            }
          } else if (kind === 'end' && owned.length > 0) {
            const [rq] = owned.splice(pick % owned.length, 1)
            const n = h.ended.length
            rq.end(BlkStatus.IOERR)
            check(h.ended.length === n + 1, 'owner told once')
            live.delete(rq.tag)
          } else if (kind === 'dispatch' && owned.length > 0) {
            const [rq] = owned.splice(pick % owned.length, 1)
            h.hwq.dispatch(rq, true)
          } else if (kind === 'release' && h.driver.pending > 0) {
            const tag = h.driver.heldRequests()[0].tag
            h.driver.release(1)
            live.delete(tag)
          }
          check(h.hwq.inFlight === live.size, 'inFlight matches the model')
          for (const rq of h.hwq.requests) check(rq.inFlight === live.has(rq.tag), `tag ${rq.tag} state matches the model`)
        }
        // Each use of a tag (tag, generation) was announced to the owner at most once.
        const uses = new Set(h.ended.map((e) => `${e.tag}:${e.generation}`))
        expect(uses.size).toBe(h.ended.length)
      },
    ), { numRuns: 300 })
  })
})

describe('stop on exhaustion and restart', () => {
  it('returns null and marks the queue stopped when every tag is busy', () => {
    const h = setup({ queueDepth: 2 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    mustSubmit(h.hwq, h.disk)
    expect(h.hwq.stopped).toBe(false)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    expect(h.hwq.stopped).toBe(true)
    expect(h.restarts).toEqual([])
  })

  it('calls onRestart once, after the tag was freed, when a tag frees on a stopped queue', () => {
    const h = setup({ queueDepth: 2 }, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    mustSubmit(h.hwq, h.disk)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    let freeAtRestart = -1
    h.hwq.onRestart = () => {
      h.restarts.push(0)
      freeAtRestart = h.hwq.requests.length - h.hwq.inFlight
      expect(h.ended).toHaveLength(1) // onEnd ran before
    }
    h.driver.release(1)
    expect(h.restarts).toEqual([0])
    expect(freeAtRestart).toBe(1)
    expect(h.hwq.stopped).toBe(false)
    h.driver.release(1)
    expect(h.restarts).toEqual([0]) // not stopped any more: no second restart
  })

  it('lets the owner take work again from onRestart (it gets the freed tag)', () => {
    const h = setup({ queueDepth: 1 }, { completion: 'manual' })
    const first = mustSubmit(h.hwq, h.disk)
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    const resumed: Request[] = []
    h.hwq.onRestart = () => { resumed.push(mustSubmit(h.hwq, h.disk)) }
    h.driver.release(1)
    expect(resumed).toHaveLength(1)
    expect(resumed[0]).toBe(first) // same tag, next generation
    expect(h.driver.calls.map((c) => c.generation)).toEqual([1, 2])
  })

  it('restarts when the owner itself ends an allocated request', () => {
    const h = setup({ queueDepth: 1 })
    const rq = h.hwq.tryAllocRequest(h.disk)!
    expect(h.hwq.tryAllocRequest(h.disk)).toBeNull()
    rq.end(BlkStatus.NOTSUPP)
    expect(h.restarts).toEqual([0])
    expect(h.ended[0].status).toBe(BlkStatus.NOTSUPP)
  })

  it('keeps queues independent', () => {
    const h = setup({ nrHwQueues: 2, queueDepth: 1 }, { completion: 'manual' })
    const [q0, q1] = h.ts.hwQueues
    mustSubmit(q0, h.disk)
    expect(q0.tryAllocRequest(h.disk)).toBeNull()
    expect(q1.tryAllocRequest(h.disk)).not.toBeNull()
    expect(q1.stopped).toBe(false)
  })
})

describe('reuse of a tag', () => {
  it('resets every request field before the tag is handed out again', () => {
    const h = setup({ queueDepth: 1, maxSegments: 4, maxRanges: 4 })
    const buf = new Uint8Array(1024)
    const rq = h.hwq.tryAllocRequest(h.disk)!
    const pdu = rq.pdu
    const owner = rq.owner
    rq.op = ReqOp.Read
    rq.sector = 8
    rq.sectors = 2
    rq.flags = ReqFlag.FUA
    setSegments(rq, [buf.subarray(0, 512), buf.subarray(512)])
    rq.segOffset[1] = 0
    rq.rangeSector[0] = 5
    rq.rangeSectors[0] = 6
    rq.rangeFlags[0] = ReqFlag.UNMAP
    rq.nrRanges = 1
    h.hwq.dispatch(rq, true)
    expect(h.ended[0]).toMatchObject({ status: BlkStatus.OK, bytesDone: 1024, sector: 8 })

    const again = h.hwq.tryAllocRequest(h.disk)!
    expect(again).toBe(rq)
    expect(again).toMatchObject({
      op: ReqOp.Read, sector: 0, sectors: 0, flags: 0, status: BlkStatus.OK, nrSegments: 0, nrRanges: 0,
      bytesDone: 0, deadline: 0,
    })
    // Identity checks: a deep comparison would walk the whole tag set behind these references.
    expect(again.disk).toBe(h.disk)
    expect(again.pdu).toBe(pdu)
    expect(again.owner).toBe(owner)
    for (let i = 0; i < 4; i++) {
      expect(again.segBuffer[i]).toBe(EMPTY_SEGMENT)
      expect(again.segOffset[i]).toBe(0)
      expect(again.segLength[i]).toBe(0)
      expect(again.rangeSector[i]).toBe(0)
      expect(again.rangeSectors[i]).toBe(0)
      expect(again.rangeFlags[i]).toBe(0)
    }
  })

  it('drops segment buffers the owner filled even when it never set nrSegments', () => {
    const h = setup({ queueDepth: 1, maxSegments: 4 })
    const rq = h.hwq.tryAllocRequest(h.disk)!
    rq.segBuffer[0] = new Uint8Array(8)
    rq.segBuffer[1] = new Uint8Array(8)
    rq.segLength[0] = 8
    rq.segLength[1] = 8
    rq.end(BlkStatus.IOERR) // e.g. the parse failed half-way
    expect(rq.segBuffer.every((b) => b === EMPTY_SEGMENT)).toBe(true)
    expect(Array.from(rq.segLength)).toEqual([0, 0, 0, 0])
    expect(rq.disk).toBeNull()
    expect(rq.state).toBe(RqState.Idle)
  })

  it('bumps the generation on every allocation', () => {
    const h = setup({ queueDepth: 1 })
    const gens: number[] = []
    for (let i = 0; i < 5; i++) {
      const rq = h.hwq.tryAllocRequest(h.disk)!
      gens.push(rq.generation)
      rq.endOk()
    }
    expect(gens).toEqual([1, 2, 3, 4, 5])
  })
})
