/**
 * The null disk through a real TagSet: every request ends OK at once, reads report their full
 * length without touching the buffer (null-co with read-zeroes=off), writes consume nothing.
 */
import { describe, expect, it } from 'vitest'
import { NullDisk } from '../../src/disks/null.js'
import { BlkStatus, GenDiskBuilder, ReqOp, TagSet, type Request } from '../../src/mq/index.js'

function harness() {
  const ts = new TagSet({ nrHwQueues: 1, queueDepth: 4, ops: new NullDisk() })
  const disk = new GenDiskBuilder().name('null').capacityBytes(1 << 20).build(ts)
  const hwq = ts.hwQueues[0]
  const ended: { op: number; status: number; bytesDone: number }[] = []
  hwq.onEnd = (rq) => { ended.push({ op: rq.op, status: rq.status, bytesDone: rq.bytesDone }) }
  const submit = (op: number, buf: Uint8Array | null): Request => {
    const rq = hwq.tryAllocRequest(disk)
    if (rq === null) throw new Error('no tag')
    rq.op = op as Request['op']
    rq.sector = 8
    if (buf !== null) {
      rq.segBuffer[0] = buf
      rq.segOffset[0] = 0
      rq.segLength[0] = buf.length
      rq.nrSegments = 1
      rq.sectors = buf.length / 512
    }
    hwq.dispatch(rq, true)
    return rq
  }
  return { ts, hwq, ended, submit }
}

describe('NullDisk', () => {
  it('ends a read OK at once with its full length and leaves the buffer alone', () => {
    const h = harness()
    const buf = new Uint8Array(4096).fill(0x77)
    h.submit(ReqOp.Read, buf)
    expect(h.ended).toEqual([{ op: ReqOp.Read, status: BlkStatus.OK, bytesDone: 4096 }])
    expect(buf.every((b) => b === 0x77)).toBe(true)
    h.ts.destroy()
  })

  it('ends writes, flushes and discards OK without producing bytes', () => {
    const h = harness()
    h.submit(ReqOp.Write, new Uint8Array(1024).fill(1))
    h.submit(ReqOp.Flush, null)
    h.submit(ReqOp.Discard, null)
    expect(h.ended).toEqual([
      { op: ReqOp.Write, status: BlkStatus.OK, bytesDone: 0 },
      { op: ReqOp.Flush, status: BlkStatus.OK, bytesDone: 0 },
      { op: ReqOp.Discard, status: BlkStatus.OK, bytesDone: 0 },
    ])
    // Every tag is free again: four more requests fit a queue of depth 4.
    for (let i = 0; i < 4; i++) h.submit(ReqOp.Read, new Uint8Array(512))
    expect(h.ended).toHaveLength(7)
    h.ts.destroy()
  })
})
