import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  BLK_CONFIG_OFFSETS, BLK_CONFIG_SIZE, decodeBlkConfig, encodeBlkConfig, type BlkConfig,
} from '../../src/blk/spec.js'

const sample: BlkConfig = {
  capacity: 0x1_2345_6789,
  sizeMax: 0x10000,
  segMax: 126,
  geometry: { cylinders: 0x1234, heads: 16, sectors: 63 },
  blkSize: 4096,
  physicalBlockExp: 3,
  alignmentOffset: 1,
  minIoSize: 0x0102,
  optIoSize: 0x0a0b0c0d,
  wce: 1,
  numQueues: 4,
  maxDiscardSectors: 32768,
  maxDiscardSeg: 1,
  discardSectorAlignment: 8,
  maxWriteZeroesSectors: 65536,
  maxWriteZeroesSeg: 2,
  writeZeroesMayUnmap: 1,
}

describe('virtio_blk_config layout', () => {
  it('matches anchors.md §2.5 offsets', () => {
    expect(BLK_CONFIG_OFFSETS).toMatchObject({
      capacity: 0, sizeMax: 8, segMax: 12, geometryCylinders: 16, geometryHeads: 18, geometrySectors: 19,
      blkSize: 20, physicalBlockExp: 24, alignmentOffset: 25, minIoSize: 26, optIoSize: 28, wce: 32,
      numQueues: 34, maxDiscardSectors: 36, maxDiscardSeg: 40, discardSectorAlignment: 44,
      maxWriteZeroesSectors: 48, maxWriteZeroesSeg: 52, writeZeroesMayUnmap: 56,
      maxSecureEraseSectors: 60, maxSecureEraseSeg: 64, secureEraseSectorAlignment: 68, zoned: 72,
    })
    expect(BLK_CONFIG_SIZE).toBe(60)
  })

  it('encodes each field little-endian at its offset', () => {
    const b = encodeBlkConfig(sample)
    expect(b.length).toBe(BLK_CONFIG_SIZE)
    const dv = new DataView(b.buffer)
    expect(dv.getBigUint64(0, true)).toBe(0x1_2345_6789n)
    expect(dv.getUint32(8, true)).toBe(0x10000)
    expect(dv.getUint32(12, true)).toBe(126)
    expect(dv.getUint16(16, true)).toBe(0x1234)
    expect(b[18]).toBe(16)
    expect(b[19]).toBe(63)
    expect(dv.getUint32(20, true)).toBe(4096)
    expect(b[24]).toBe(3)
    expect(b[25]).toBe(1)
    expect(dv.getUint16(26, true)).toBe(0x0102)
    expect(dv.getUint32(28, true)).toBe(0x0a0b0c0d)
    expect(b[32]).toBe(1)
    expect(b[33]).toBe(0)
    expect(dv.getUint16(34, true)).toBe(4)
    expect(dv.getUint32(36, true)).toBe(32768)
    expect(dv.getUint32(40, true)).toBe(1)
    expect(dv.getUint32(44, true)).toBe(8)
    expect(dv.getUint32(48, true)).toBe(65536)
    expect(dv.getUint32(52, true)).toBe(2)
    expect(b[56]).toBe(1)
    expect([...b.subarray(57, 60)]).toEqual([0, 0, 0])
  })

  it('round-trips', () => {
    const cfg: fc.Arbitrary<BlkConfig> = fc.record({
      capacity: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      sizeMax: fc.nat({ max: 0xffff_ffff }),
      segMax: fc.nat({ max: 0xffff_ffff }),
      geometry: fc.record({ cylinders: fc.nat({ max: 0xffff }), heads: fc.nat({ max: 0xff }), sectors: fc.nat({ max: 0xff }) }),
      blkSize: fc.nat({ max: 0xffff_ffff }),
      physicalBlockExp: fc.nat({ max: 0xff }),
      alignmentOffset: fc.nat({ max: 0xff }),
      minIoSize: fc.nat({ max: 0xffff }),
      optIoSize: fc.nat({ max: 0xffff_ffff }),
      wce: fc.nat({ max: 0xff }),
      numQueues: fc.nat({ max: 0xffff }),
      maxDiscardSectors: fc.nat({ max: 0xffff_ffff }),
      maxDiscardSeg: fc.nat({ max: 0xffff_ffff }),
      discardSectorAlignment: fc.nat({ max: 0xffff_ffff }),
      maxWriteZeroesSectors: fc.nat({ max: 0xffff_ffff }),
      maxWriteZeroesSeg: fc.nat({ max: 0xffff_ffff }),
      writeZeroesMayUnmap: fc.nat({ max: 0xff }),
    })
    fc.assert(fc.property(cfg, (c) => {
      expect(decodeBlkConfig(encodeBlkConfig(c))).toEqual(c)
    }))
  })

  it('reads fields missing from a short buffer as 0', () => {
    const full = encodeBlkConfig(sample)
    // 36 bytes: through num_queues (QEMU's minimum virtio-blk config size).
    const d = decodeBlkConfig(full.subarray(0, 36))
    expect(d.numQueues).toBe(4)
    expect(d.wce).toBe(1)
    expect(d.maxDiscardSectors).toBe(0)
    expect(d.writeZeroesMayUnmap).toBe(0)
    // A field cut in half is missing too.
    expect(decodeBlkConfig(full.subarray(0, 35)).numQueues).toBe(0)
    expect(decodeBlkConfig(new Uint8Array(0)).capacity).toBe(0)
    // Longer images (secure erase, zoned fields) decode the same.
    const long = new Uint8Array(96)
    long.set(full)
    expect(decodeBlkConfig(long)).toEqual(sample)
  })

  it('rejects values that do not fit their field', () => {
    expect(() => encodeBlkConfig({ ...sample, numQueues: 0x10000 })).toThrow(RangeError)
    expect(() => encodeBlkConfig({ ...sample, wce: 256 })).toThrow(RangeError)
    expect(() => encodeBlkConfig({ ...sample, capacity: -1 })).toThrow(RangeError)
    expect(() => encodeBlkConfig({ ...sample, sizeMax: 2 ** 32 })).toThrow(RangeError)
  })
})
