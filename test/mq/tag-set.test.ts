import { describe, it, expect } from 'vitest'
import { BlkStatus, GenDiskBuilder, InvalidArgumentError, MqError, ReqOp, RqState, TagSet } from '../../src/mq/index.js'
import type { Operations, Request, TagSetOptions } from '../../src/mq/index.js'
import { TestDisk } from '../helpers/disks.js'
import { codeOf, mustSubmit, setup } from './harness.js'

const ops: Operations = { queueRq: () => BlkStatus.OK }

describe('TagSet construction', () => {
  it.each<[string, Partial<TagSetOptions>]>([
    ['nrHwQueues 0', { nrHwQueues: 0 }],
    ['nrHwQueues 257', { nrHwQueues: 257 }],
    ['nrHwQueues 1.5', { nrHwQueues: 1.5 }],
    ['queueDepth 0', { queueDepth: 0 }],
    ['queueDepth 65537', { queueDepth: 65537 }],
    ['queueDepth NaN', { queueDepth: Number.NaN }],
    ['maxSegments 0', { maxSegments: 0 }],
    ['maxRanges 65536', { maxRanges: 65536 }],
    ['timeoutMs -1', { timeoutMs: -1 }],
    ['requeueDelayMs 0', { requeueDelayMs: 0 }],
    ['too many preallocated slots', { queueDepth: 65536, maxSegments: 256 }],
    ['ops without queueRq', { ops: {} as Operations }],
    ['ops.complete not a function', { ops: { queueRq: () => BlkStatus.OK, complete: 1 } as unknown as Operations }],
    ['initRequest not a function', { initRequest: 'x' as unknown as () => void }],
  ])('rejects %s with EMQ_INVALID_ARGUMENT', (_name, bad) => {
    const make = () => new TagSet({ nrHwQueues: 1, queueDepth: 4, ops, ...bad })
    expect(make).toThrow(InvalidArgumentError)
    expect(codeOf(make)).toBe('EMQ_INVALID_ARGUMENT')
  })

  it('accepts the extremes of each range and applies defaults', () => {
    const ts = new TagSet({ nrHwQueues: 256, queueDepth: 1, ops })
    expect(ts.hwQueues).toHaveLength(256)
    expect(ts.maxSegments).toBe(256)
    expect(ts.maxRanges).toBe(256)
    expect(ts.timeoutMs).toBe(30000)
    expect(ts.requeueDelayMs).toBe(3)
    const deep = new TagSet({ nrHwQueues: 1, queueDepth: 65536, ops, maxSegments: 4, maxRanges: 1 })
    expect(deep.hwQueues[0].requests).toHaveLength(65536)
    expect(deep.tagToRq(0, 65535).tag).toBe(65535)
  })

  it('preallocates one idle request per tag with arrays sized by the set, calls initRequest (driver, then owner) and initHctx', () => {
    const driver = new TestDisk({ size: 4096 })
    const order: string[] = []
    const origInit = driver.initRequest.bind(driver)
    driver.initRequest = (rq: Request) => { order.push(`driver:${rq.hwq.index}:${rq.tag}`); origInit(rq) }
    const ts = new TagSet({
      nrHwQueues: 2, queueDepth: 3, ops: driver, maxSegments: 5, maxRanges: 2,
      initRequest: (rq) => { order.push(`owner:${rq.hwq.index}:${rq.tag}`); rq.owner = { head: -1 } },
    })
    expect(driver.initRequests).toBe(6)
    expect(order.slice(0, 2)).toEqual(['driver:0:0', 'owner:0:0'])
    expect(order).toHaveLength(12)
    expect(driver.hctxInits).toEqual(ts.hwQueues)
    for (const hwq of ts.hwQueues) {
      expect(hwq.tagSet).toBe(ts)
      hwq.requests.forEach((rq, tag) => {
        expect(rq.tag).toBe(tag)
        expect(rq.hwq).toBe(hwq)
        expect(rq.state).toBe(RqState.Idle)
        expect(rq.inFlight).toBe(false)
        expect(rq.segBuffer).toHaveLength(5)
        expect(rq.segOffset).toHaveLength(5)
        expect(rq.segLength).toHaveLength(5)
        expect(rq.rangeSector).toHaveLength(2)
        expect(rq.rangeSectors).toHaveLength(2)
        expect(rq.rangeFlags).toHaveLength(2)
        expect(rq.pdu).toEqual({ failWith: -1 })
        expect(rq.owner).toEqual({ head: -1 })
        expect(ts.tagToRq(hwq.index, tag)).toBe(rq)
      })
    }
  })

  it('gives each request its own slice of the queue-wide arrays', () => {
    const ts = new TagSet({ nrHwQueues: 1, queueDepth: 3, ops, maxSegments: 2, maxRanges: 2 })
    const [a, b] = ts.hwQueues[0].requests
    a.segOffset[1] = 7
    a.rangeSector[1] = 9
    expect(b.segOffset[0]).toBe(0)
    expect(b.rangeSector[0]).toBe(0)
  })
})

describe('TagSet.mapQueue', () => {
  it('maps virtqueues 1:1 while there are enough hardware queues', () => {
    const ts = new TagSet({ nrHwQueues: 4, queueDepth: 1, ops })
    for (let vq = 0; vq < 4; vq++) expect(ts.mapQueue(vq)).toBe(ts.hwQueues[vq])
  })

  it('maps the others modulo the number of hardware queues', () => {
    const ts = new TagSet({ nrHwQueues: 3, queueDepth: 1, ops })
    expect(ts.mapQueue(3)).toBe(ts.hwQueues[0])
    expect(ts.mapQueue(4)).toBe(ts.hwQueues[1])
    expect(ts.mapQueue(8)).toBe(ts.hwQueues[2])
    const one = new TagSet({ nrHwQueues: 1, queueDepth: 1, ops })
    expect(one.mapQueue(7)).toBe(one.hwQueues[0])
  })

  it('rejects negative or fractional virtqueue indices', () => {
    const ts = new TagSet({ nrHwQueues: 2, queueDepth: 1, ops })
    expect(codeOf(() => ts.mapQueue(-1))).toBe('EMQ_INVALID_ARGUMENT')
    expect(codeOf(() => ts.mapQueue(0.5))).toBe('EMQ_INVALID_ARGUMENT')
  })
})

describe('TagSet.tagToRq', () => {
  it('rejects out-of-range queue or tag', () => {
    const ts = new TagSet({ nrHwQueues: 2, queueDepth: 4, ops })
    expect(codeOf(() => ts.tagToRq(2, 0))).toBe('EMQ_INVALID_ARGUMENT')
    expect(codeOf(() => ts.tagToRq(0, 4))).toBe('EMQ_INVALID_ARGUMENT')
    expect(codeOf(() => ts.tagToRq(0, -1))).toBe('EMQ_INVALID_ARGUMENT')
  })
})

describe('TagSet.destroy', () => {
  it('calls exitHctx once per queue and makes the queues unusable', () => {
    const h = setup({ nrHwQueues: 2 })
    h.ts.destroy()
    expect(h.driver.hctxExits).toEqual(h.ts.hwQueues)
    h.ts.destroy()
    expect(h.driver.hctxExits).toHaveLength(2)
    expect(codeOf(() => h.hwq.tryAllocRequest(h.disk))).toBe('EMQ_DESTROYED')
  })

  it('refuses while requests are in flight and leaves everything running', () => {
    const h = setup({}, { completion: 'manual' })
    mustSubmit(h.hwq, h.disk)
    expect(h.ts.inFlight).toBe(1)
    const err = (() => { try { h.ts.destroy() } catch (e) { return e } })()
    expect(err).toBeInstanceOf(MqError)
    expect((err as MqError).code).toBe('EMQ_BUSY')
    expect(h.driver.hctxExits).toHaveLength(0)
    h.driver.release()
    expect(h.ts.inFlight).toBe(0)
    h.ts.destroy()
    expect(h.driver.hctxExits).toHaveLength(1)
  })
})

describe('several GenDisks on one TagSet', () => {
  it('requests carry the disk they were allocated for, and the driver serves each disk', () => {
    const h = setup({ queueDepth: 8 })
    const other = new GenDiskBuilder().name('other').capacitySectors(64).serial('OTHER-2').build(h.ts)
    const idA = new Uint8Array(20)
    const idB = new Uint8Array(20)
    mustSubmit(h.hwq, h.disk, (rq) => { rq.op = ReqOp.GetId; rq.segBuffer[0] = idA; rq.segLength[0] = 20; rq.nrSegments = 1 })
    mustSubmit(h.hwq, other, (rq) => { rq.op = ReqOp.GetId; rq.segBuffer[0] = idB; rq.segLength[0] = 20; rq.nrSegments = 1 })
    expect(h.driver.calls.map((c) => c.disk)).toEqual([h.disk, other])
    expect(h.ended.map((e) => e.disk)).toEqual([h.disk, other])
    expect(new TextDecoder().decode(idA.subarray(0, 8))).toBe('SERIAL-1')
    expect(new TextDecoder().decode(idB.subarray(0, 7))).toBe('OTHER-2')
  })

  it('refuses a disk built on another tag set', () => {
    const a = setup()
    const b = setup()
    expect(codeOf(() => a.hwq.tryAllocRequest(b.disk))).toBe('EMQ_INVALID_ARGUMENT')
    expect(a.hwq.inFlight).toBe(0)
  })
})
