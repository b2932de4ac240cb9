import { describe, it, expect } from 'vitest'
import { BlkStatus, GenDiskBuilder, InvalidArgumentError, MAX_CAPACITY_SECTORS, TagSet } from '../../src/mq/index.js'
import { codeOf } from './harness.js'

const ts = new TagSet({ nrHwQueues: 1, queueDepth: 1, ops: { queueRq: () => BlkStatus.OK }, maxSegments: 64, maxRanges: 16 })

describe('GenDiskBuilder', () => {
  it('builds with documented defaults', () => {
    const d = new GenDiskBuilder().build(ts)
    expect(d).toMatchObject({
      name: 'disk', capacitySectors: 0, capacityBytes: 0, logicalBlockSize: 512, physicalBlockSize: 512,
      readOnly: false, rotational: false, serial: '', discard: null, writeZeroes: null, tagSet: ts,
      maxSegments: 64, maxSegmentSize: 0xffff_ffff, maxSectors: 0xffff_ffff,
    })
  })

  it('records every setting, whatever the order of calls', () => {
    const d = new GenDiskBuilder()
      .capacityBytes(1 << 30).logicalBlockSize(4096).physicalBlockSize(8192).name('vda')
      .readOnly(true).rotational(true).serial('12345678901234567890')
      .discard({ maxSectors: 2048, maxSegments: 16, granularitySectors: 8 })
      .writeZeroes({ maxSectors: 4096, maxSegments: 1, mayUnmap: true })
      .maxSegments(32).maxSegmentSize(65536).maxSectors(1024)
      .build(ts)
    expect(d).toMatchObject({
      name: 'vda', capacitySectors: (1 << 30) / 512, capacityBytes: 1 << 30, logicalBlockSize: 4096,
      physicalBlockSize: 8192, readOnly: true, rotational: true, serial: '12345678901234567890',
      discard: { maxSectors: 2048, maxSegments: 16, granularitySectors: 8 },
      writeZeroes: { maxSectors: 4096, maxSegments: 1, mayUnmap: true },
      maxSegments: 32, maxSegmentSize: 65536, maxSectors: 1024,
    })
    expect(Object.isFrozen(d.discard)).toBe(true)
  })

  it('defaults maxSectors to the largest whole number of logical blocks', () => {
    expect(new GenDiskBuilder().logicalBlockSize(4096).build(ts).maxSectors).toBe(0xffff_fff8)
  })

  it('lets the last of capacitySectors / capacityBytes win', () => {
    expect(new GenDiskBuilder().capacityBytes(4096).capacitySectors(2).build(ts).capacitySectors).toBe(2)
    expect(new GenDiskBuilder().capacitySectors(2).capacityBytes(4096).build(ts).capacitySectors).toBe(8)
  })

  it.each<[string, (b: GenDiskBuilder) => GenDiskBuilder]>([
    ['empty name', (b) => b.name('')],
    ['name longer than 32', (b) => b.name('x'.repeat(33))],
    ['negative capacity', (b) => b.capacitySectors(-8)],
    ['fractional capacity', (b) => b.capacitySectors(1.5)],
    ['capacity beyond 2^53 bytes', (b) => b.capacitySectors(MAX_CAPACITY_SECTORS + 1)],
    ['capacityBytes not a multiple of the block size', (b) => b.capacityBytes(1000)],
    ['capacityBytes not a multiple of a 4K block', (b) => b.logicalBlockSize(4096).capacityBytes(512 * 9)],
    ['capacitySectors not whole 4K blocks', (b) => b.logicalBlockSize(4096).capacitySectors(9)],
    ['logical block 1000', (b) => b.logicalBlockSize(1000)],
    ['logical block 8192', (b) => b.logicalBlockSize(8192)],
    ['logical block 256', (b) => b.logicalBlockSize(256)],
    ['physical below logical', (b) => b.logicalBlockSize(4096).physicalBlockSize(512)],
    ['physical not a power of two', (b) => b.physicalBlockSize(3072)],
    ['serial of 21 bytes', (b) => b.serial('x'.repeat(21))],
    ['serial of 21 UTF-8 bytes in 11 characters', (b) => b.serial('é'.repeat(10) + 'x')],
    ['readOnly not boolean', (b) => b.readOnly(1 as unknown as boolean)],
    ['maxSegments 0', (b) => b.maxSegments(0)],
    ['maxSegments above the tag set', (b) => b.maxSegments(65)],
    ['maxSegmentSize below a sector', (b) => b.maxSegmentSize(511)],
    ['maxSegmentSize above u32', (b) => b.maxSegmentSize(2 ** 32)],
    ['maxSectors 0', (b) => b.maxSectors(0)],
    ['maxSectors not whole 4K blocks', (b) => b.logicalBlockSize(4096).maxSectors(12)],
    ['discard maxSectors 0', (b) => b.discard({ maxSectors: 0, maxSegments: 1, granularitySectors: 1 })],
    ['discard maxSegments above maxRanges', (b) => b.discard({ maxSectors: 8, maxSegments: 17, granularitySectors: 1 })],
    ['discard granularity 0', (b) => b.discard({ maxSectors: 8, maxSegments: 1, granularitySectors: 0 })],
    ['discard granularity not whole 4K blocks', (b) => b.logicalBlockSize(4096).discard({ maxSectors: 8, maxSegments: 1, granularitySectors: 12 })],
    ['write-zeroes maxSegments 0', (b) => b.writeZeroes({ maxSectors: 8, maxSegments: 0, mayUnmap: false })],
    ['write-zeroes mayUnmap missing', (b) => b.writeZeroes({ maxSectors: 8, maxSegments: 1 } as never)],
  ])('rejects %s with EMQ_INVALID_ARGUMENT', (_name, configure) => {
    const build = () => configure(new GenDiskBuilder()).build(ts)
    expect(build).toThrow(InvalidArgumentError)
    expect(codeOf(build)).toBe('EMQ_INVALID_ARGUMENT')
  })

  it('accepts a 20-byte serial and a 32-character name', () => {
    const d = new GenDiskBuilder().serial('s'.repeat(20)).name('n'.repeat(32)).build(ts)
    expect(d.serial).toHaveLength(20)
  })

  it('needs a tag set', () => {
    expect(codeOf(() => new GenDiskBuilder().build(undefined as unknown as TagSet))).toBe('EMQ_INVALID_ARGUMENT')
  })
})

describe('GenDisk resize', () => {
  it('accepts a new capacity in whole logical blocks', () => {
    const d = new GenDiskBuilder().logicalBlockSize(4096).capacitySectors(8).build(ts)
    d.capacitySectors = 16
    expect(d.capacitySectors).toBe(16)
    expect(d.capacityBytes).toBe(8192)
  })

  it('rejects a bad capacity and keeps the old one', () => {
    const d = new GenDiskBuilder().logicalBlockSize(4096).capacitySectors(8).build(ts)
    expect(codeOf(() => { d.capacitySectors = 12 })).toBe('EMQ_INVALID_ARGUMENT')
    expect(codeOf(() => { d.capacitySectors = -8 })).toBe('EMQ_INVALID_ARGUMENT')
    expect(d.capacitySectors).toBe(8)
  })
})
