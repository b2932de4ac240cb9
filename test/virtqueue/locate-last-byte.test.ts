/**
 * SplitQueue.locateLastByte: for chains walk() refused, the final writable byte is found when the
 * links can be followed (so the request can still get a status), and nothing is found otherwise.
 */
import { describe, expect, it } from 'vitest'
import {
  ChainError, DescChain, SplitQueue, SplitQueueDriver, VIRTQ_DESC_F_INDIRECT as INDIRECT, VIRTQ_DESC_F_NEXT as NEXT,
  VIRTQ_DESC_F_WRITE as WRITE,
} from '../../src/virtqueue/index.js'
import { MockGuestMemory } from '../helpers/guest-memory.js'

const SIZE = 8
const BUF = 0x8000
const TABLE = 0x9000

function rig() {
  const mock = MockGuestMemory.create(1 << 16)
  const cfg = { size: SIZE, descGpa: 0, availGpa: 0x1000, usedGpa: 0x2000, eventIdx: false }
  const drv = new SplitQueueDriver(mock.memory, cfg)
  const vq = new SplitQueue(mock.memory, cfg)
  return { mock, drv, vq }
}

function tableBytes(rows: Array<[number, number, number, number]>): Uint8Array {
  const out = new Uint8Array(16 * rows.length)
  const dv = new DataView(out.buffer)
  rows.forEach(([addr, len, flags, next], i) => {
    dv.setBigUint64(16 * i, BigInt(addr), true)
    dv.setUint32(16 * i + 8, len, true)
    dv.setUint16(16 * i + 12, flags, true)
    dv.setUint16(16 * i + 14, next, true)
  })
  return out
}

describe('locateLastByte', () => {
  it('finds the status byte of a chain refused for readable-after-writable', () => {
    const { drv, vq, mock } = rig()
    drv.writeDescriptor(0, BUF, 16, WRITE | NEXT, 1)
    drv.writeDescriptor(1, BUF + 16, 16, NEXT, 2)
    drv.writeDescriptor(2, BUF + 100, 4, WRITE, 0)
    expect(vq.walk(0, new DescChain(8))).toBe(ChainError.READ_AFTER_WRITE)
    expect(vq.locateLastByte(0)).toBe(true)
    const w = mock.memory.windows[vq.lastWindow]
    expect(w.gpa + vq.lastOffset).toBe(BUF + 103)
  })

  it('follows an indirect table', () => {
    const { drv, vq, mock } = rig()
    mock.write(TABLE, tableBytes([[BUF, 16, NEXT, 1], [BUF + 64, 8, WRITE, 0]]))
    drv.writeDescriptor(3, TABLE, 32, INDIRECT, 0)
    expect(vq.locateLastByte(3)).toBe(true)
    expect(mock.memory.windows[vq.lastWindow].gpa + vq.lastOffset).toBe(BUF + 71)
  })

  it.each([
    ['a loop', (d: SplitQueueDriver) => { d.writeDescriptor(0, BUF, 1, WRITE | NEXT, 1); d.writeDescriptor(1, BUF, 1, WRITE | NEXT, 0) }],
    ['a next outside the table', (d: SplitQueueDriver) => d.writeDescriptor(0, BUF, 1, WRITE | NEXT, SIZE)],
    ['a last descriptor that is read-only', (d: SplitQueueDriver) => d.writeDescriptor(0, BUF, 16, 0, 0)],
    ['a last descriptor outside guest memory', (d: SplitQueueDriver) => d.writeDescriptor(0, 0x10_0000, 16, WRITE, 0)],
    ['a zero-length last descriptor', (d: SplitQueueDriver) => d.writeDescriptor(0, BUF, 0, WRITE, 0)],
    ['an indirect table outside guest memory', (d: SplitQueueDriver) => d.writeDescriptor(0, 0x20_0000, 32, INDIRECT, 0)],
  ])('finds nothing behind %s', (_what, build) => {
    const { drv, vq } = rig()
    build(drv)
    expect(vq.locateLastByte(0)).toBe(false)
  })

  it('refuses a head outside the ring', () => {
    expect(rig().vq.locateLastByte(SIZE)).toBe(false)
  })
})
