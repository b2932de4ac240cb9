import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  BackendReq, FLAG_NEED_REPLY, FLAG_REPLY, FrontendReq, HEADER_SIZE, MAX_CONFIG_SIZE, MAX_MEM_REGIONS,
  MAX_PAYLOAD_SIZE, ProtocolFeature, VERSION, VRING_NOFD_MASK, VhostUserError,
  decodeConfig, decodeHeader, decodeInflight, decodeLog, decodeMemTable, decodeSingleMemRegion, decodeU64,
  decodeVringAddr, decodeVringFd, decodeVringState, encodeConfig, encodeHeader, encodeInflight, encodeLog,
  encodeMemTable, encodeMessage, encodeSingleMemRegion, encodeU64, encodeVringAddr, encodeVringFd,
  encodeVringState, featureBit, hasFeature, requestName, validateMessage,
  type MemRegion, type MessageHeader, type VhostUserErrorCode,
} from '../../src/vhost/messages.js'

/** Runs `fn` and returns the VhostUserError code it throws (fails if it throws anything else or nothing). */
function codeOf(fn: () => unknown): VhostUserErrorCode {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(VhostUserError)
    return (err as VhostUserError).code
  }
  throw new Error('expected a VhostUserError, nothing was thrown')
}

function header(request: number, size: number, flags = VERSION): Uint8Array {
  const b = new Uint8Array(HEADER_SIZE)
  encodeHeader({ request, flags, size }, b)
  return b
}

function validate(request: number, payload: Uint8Array, fds: number, flags = VERSION): void {
  validateMessage({ request, flags, size: payload.length }, payload, fds)
}

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
/** Regions whose ends stay below 2^53 - 1 (decodeMemTable rejects overflowing ones). */
const region: fc.Arbitrary<MemRegion> = fc.record({
  gpa: fc.integer({ min: 0, max: 2 ** 52 }),
  size: fc.integer({ min: 1, max: 2 ** 52 }),
  uva: fc.integer({ min: 0, max: 2 ** 52 }),
  mmapOffset: fc.integer({ min: 0, max: 2 ** 52 }),
})

describe('header', () => {
  it('round-trips through encodeHeader/decodeHeader', () => {
    fc.assert(fc.property(u32, fc.constantFrom(0, FLAG_REPLY, FLAG_NEED_REPLY, FLAG_REPLY | FLAG_NEED_REPLY), fc.integer({ min: 0, max: MAX_PAYLOAD_SIZE }), (request, extra, size) => {
      const h: MessageHeader = { request, flags: VERSION | extra, size }
      const b = new Uint8Array(HEADER_SIZE)
      encodeHeader(h, b)
      expect(decodeHeader(b)).toEqual(h)
    }))
  })

  it('lays fields out as request, flags, size (little-endian u32)', () => {
    expect([...header(FrontendReq.SET_MEM_TABLE, 0x48, VERSION | FLAG_NEED_REPLY)]).toEqual([5, 0, 0, 0, 9, 0, 0, 0, 0x48, 0, 0, 0])
  })

  it('encodeMessage prepends the header to the payload', () => {
    const m = encodeMessage(FrontendReq.SET_FEATURES, VERSION, encodeU64(0x1234n))
    expect(m.length).toBe(HEADER_SIZE + 8)
    expect(decodeHeader(m)).toEqual({ request: FrontendReq.SET_FEATURES, flags: VERSION, size: 8 })
    expect(decodeU64(m.subarray(HEADER_SIZE))).toBe(0x1234n)
    expect(encodeMessage(FrontendReq.GET_FEATURES, VERSION).length).toBe(HEADER_SIZE)
  })

  it('rejects a short header', () => {
    expect(codeOf(() => decodeHeader(new Uint8Array(11)))).toBe('EVHOST_TRUNCATED')
  })

  it('rejects version bits other than 1', () => {
    for (const v of [0, 2, 3]) expect(codeOf(() => decodeHeader(header(1, 0, v)))).toBe('EVHOST_BAD_VERSION')
  })

  it('rejects unknown flag bits', () => {
    expect(codeOf(() => decodeHeader(header(1, 0, VERSION | 0x10)))).toBe('EVHOST_BAD_FLAGS')
    expect(codeOf(() => decodeHeader(header(1, 0, VERSION | 0x8000_0000)))).toBe('EVHOST_BAD_FLAGS')
  })

  it('accepts MAX_PAYLOAD_SIZE and rejects one byte more', () => {
    expect(decodeHeader(header(1, MAX_PAYLOAD_SIZE)).size).toBe(MAX_PAYLOAD_SIZE)
    expect(codeOf(() => decodeHeader(header(1, MAX_PAYLOAD_SIZE + 1)))).toBe('EVHOST_PAYLOAD_TOO_LARGE')
    expect(codeOf(() => decodeHeader(header(1, 0xffff_ffff)))).toBe('EVHOST_PAYLOAD_TOO_LARGE')
  })

  it('does not check the request code (replies and back-end requests share the header)', () => {
    expect(decodeHeader(header(9999, 0)).request).toBe(9999)
  })
})

describe('codes and features', () => {
  it('keeps the spec ids (anchors.md §2.6)', () => {
    expect(FrontendReq.SET_VRING_ENABLE).toBe(18)
    expect(FrontendReq.SET_BACKEND_REQ_FD).toBe(21)
    expect(FrontendReq.GET_CONFIG).toBe(24)
    expect(FrontendReq.RESET_DEVICE).toBe(34)
    expect(FrontendReq.GET_STATUS).toBe(40)
    expect(FrontendReq.CHECK_DEVICE_STATE).toBe(43)
    expect(BackendReq.CONFIG_CHANGE_MSG).toBe(2)
    expect(ProtocolFeature.CONFIG).toBe(9)
    expect(ProtocolFeature.CONFIGURE_MEM_SLOTS).toBe(15)
    expect(ProtocolFeature.DEVICE_STATE).toBe(19)
  })

  it('names requests for logs', () => {
    expect(requestName(FrontendReq.SET_VRING_ADDR)).toBe('SET_VRING_ADDR')
    expect(requestName(0)).toBe('UNKNOWN(0)')
    expect(requestName(44)).toBe('UNKNOWN(44)')
  })

  it('tests and builds feature bits by number', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 63 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (bit, word) => {
      expect(hasFeature(featureBit(bit), bit)).toBe(true)
      expect(hasFeature(word | featureBit(bit), bit)).toBe(true)
      expect(hasFeature(word & ~featureBit(bit), bit)).toBe(false)
    }))
    expect(featureBit(32)).toBe(0x1_0000_0000n)
  })

  it('carries code and request on VhostUserError', () => {
    const e = codeOf(() => validate(FrontendReq.SET_VRING_NUM, new Uint8Array(4), 0))
    expect(e).toBe('EVHOST_BAD_SIZE')
    try {
      validate(FrontendReq.SET_VRING_NUM, new Uint8Array(4), 0)
    } catch (err) {
      expect((err as VhostUserError).request).toBe(FrontendReq.SET_VRING_NUM)
      expect((err as VhostUserError).name).toBe('VhostUserError')
    }
  })
})

/** Expected request payload size and fd count for every fixed-layout request. */
const fixed: [keyof typeof FrontendReq, number, number][] = [
  ['GET_FEATURES', 0, 0], ['SET_FEATURES', 8, 0], ['SET_OWNER', 0, 0], ['RESET_OWNER', 0, 0],
  ['SET_LOG_BASE', 16, 1], ['SET_LOG_FD', 0, 1], ['SET_VRING_NUM', 8, 0], ['SET_VRING_ADDR', 40, 0],
  ['SET_VRING_BASE', 8, 0], ['GET_VRING_BASE', 8, 0], ['GET_PROTOCOL_FEATURES', 0, 0],
  ['SET_PROTOCOL_FEATURES', 8, 0], ['GET_QUEUE_NUM', 0, 0], ['SET_VRING_ENABLE', 8, 0], ['SEND_RARP', 8, 0],
  ['NET_SET_MTU', 8, 0], ['SET_BACKEND_REQ_FD', 0, 1], ['IOTLB_MSG', 32, 0], ['SET_VRING_ENDIAN', 8, 0],
  ['CLOSE_CRYPTO_SESSION', 8, 0], ['POSTCOPY_ADVISE', 0, 0], ['POSTCOPY_LISTEN', 0, 0], ['POSTCOPY_END', 0, 0],
  ['GET_INFLIGHT_FD', 24, 0], ['SET_INFLIGHT_FD', 24, 1], ['GPU_SET_SOCKET', 0, 1], ['RESET_DEVICE', 0, 0],
  ['VRING_KICK', 8, 0], ['GET_MAX_MEM_SLOTS', 0, 0], ['ADD_MEM_REG', 40, 1], ['SET_STATUS', 8, 0],
  ['GET_STATUS', 0, 0], ['GET_SHARED_OBJECT', 16, 0], ['SET_DEVICE_STATE_FD', 8, 1], ['CHECK_DEVICE_STATE', 0, 0],
]

describe('validateMessage', () => {
  it.each(fixed)('%s: accepts %i bytes with %i fds, rejects other sizes and fd counts', (name, size, fds) => {
    const req = FrontendReq[name]
    validate(req, new Uint8Array(size), fds)
    expect(codeOf(() => validate(req, new Uint8Array(size + 1), fds))).toBe('EVHOST_BAD_SIZE')
    if (size > 0) expect(codeOf(() => validate(req, new Uint8Array(size - 1), fds))).toBe('EVHOST_BAD_SIZE')
    expect(codeOf(() => validate(req, new Uint8Array(size), fds + 1))).toBe('EVHOST_BAD_FDS')
    if (fds > 0) expect(codeOf(() => validate(req, new Uint8Array(size), 0))).toBe('EVHOST_BAD_FDS')
  })

  it('covers every request code with a rule', () => {
    const covered = new Set([...fixed.map(([n]) => n), 'SET_MEM_TABLE', 'SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR', 'GET_CONFIG', 'SET_CONFIG', 'CREATE_CRYPTO_SESSION', 'REM_MEM_REG'])
    expect(new Set(Object.keys(FrontendReq))).toEqual(covered)
  })

  it('rejects unknown request codes', () => {
    for (const r of [0, 44, 100, 0xffff_ffff]) expect(codeOf(() => validate(r, new Uint8Array(0), 0))).toBe('EVHOST_UNKNOWN_REQUEST')
  })

  it('rejects a request carrying the REPLY flag', () => {
    expect(codeOf(() => validate(FrontendReq.GET_FEATURES, new Uint8Array(0), 0, VERSION | FLAG_REPLY))).toBe('EVHOST_BAD_FLAGS')
    validate(FrontendReq.SET_FEATURES, new Uint8Array(8), 0, VERSION | FLAG_NEED_REPLY)
  })

  it('rejects a payload whose length differs from header.size', () => {
    expect(codeOf(() => validateMessage({ request: FrontendReq.SET_FEATURES, flags: VERSION, size: 8 }, new Uint8Array(7), 0))).toBe('EVHOST_BAD_SIZE')
  })

  it.each(['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const)('%s: one fd, or none with the NOFD bit', (name) => {
    const req = FrontendReq[name]
    validate(req, encodeVringFd({ index: 3, noFd: false }), 1)
    validate(req, encodeVringFd({ index: 3, noFd: true }), 0)
    expect(codeOf(() => validate(req, encodeVringFd({ index: 3, noFd: false }), 0))).toBe('EVHOST_BAD_FDS')
    expect(codeOf(() => validate(req, encodeVringFd({ index: 3, noFd: true }), 1))).toBe('EVHOST_BAD_FDS')
    expect(codeOf(() => validate(req, new Uint8Array(4), 1))).toBe('EVHOST_BAD_SIZE')
  })

  it('SET_MEM_TABLE: exactly 8 + 32n bytes and n fds, 1 <= n <= 8', () => {
    const regs = (n: number): MemRegion[] => Array.from({ length: n }, (_, i) => ({ gpa: i * 0x1000, size: 0x1000, uva: 0x10000 + i * 0x1000, mmapOffset: 0 }))
    for (let n = 1; n <= MAX_MEM_REGIONS; n++) {
      validate(FrontendReq.SET_MEM_TABLE, encodeMemTable(regs(n)), n)
      expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, encodeMemTable(regs(n)), n - 1))).toBe('EVHOST_BAD_FDS')
      expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, encodeMemTable(regs(n)), n + 1))).toBe('EVHOST_BAD_FDS')
    }
    // nregions says 2 but three regions' worth of bytes follow.
    const three = encodeMemTable(regs(3))
    new DataView(three.buffer).setUint32(0, 2, true)
    expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, three, 2))).toBe('EVHOST_BAD_SIZE')
    // nregions 0 or 9 inside a plausible size.
    const zero = encodeMemTable(regs(1))
    new DataView(zero.buffer).setUint32(0, 0, true)
    expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, zero, 0))).toBe('EVHOST_BAD_PAYLOAD')
    const nine = encodeMemTable(regs(8))
    new DataView(nine.buffer).setUint32(0, 9, true)
    expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, nine, 8))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, new Uint8Array(8), 0))).toBe('EVHOST_BAD_SIZE')
    expect(codeOf(() => validate(FrontendReq.SET_MEM_TABLE, new Uint8Array(8 + 9 * 32), 9))).toBe('EVHOST_BAD_SIZE')
  })

  it.each(['GET_CONFIG', 'SET_CONFIG'] as const)('%s: 1..256 config bytes, size field consistent', (name) => {
    const req = FrontendReq[name]
    validate(req, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(60) }), 0)
    validate(req, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(MAX_CONFIG_SIZE) }), 0)
    expect(codeOf(() => validate(req, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(0) }), 0))).toBe('EVHOST_BAD_SIZE')
    expect(codeOf(() => validate(req, new Uint8Array(12 + MAX_CONFIG_SIZE + 1), 0))).toBe('EVHOST_BAD_SIZE')
    const lying = encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(8) })
    new DataView(lying.buffer).setUint32(4, 4, true)
    expect(codeOf(() => validate(req, lying, 0))).toBe('EVHOST_BAD_SIZE')
    expect(codeOf(() => validate(req, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(4) }), 1))).toBe('EVHOST_BAD_FDS')
  })

  it('REM_MEM_REG: no fd, or one for compatibility', () => {
    const p = encodeSingleMemRegion({ gpa: 0, size: 0x1000, uva: 0x1000, mmapOffset: 0 })
    validate(FrontendReq.REM_MEM_REG, p, 0)
    validate(FrontendReq.REM_MEM_REG, p, 1)
    expect(codeOf(() => validate(FrontendReq.REM_MEM_REG, p, 2))).toBe('EVHOST_BAD_FDS')
  })

  it('CREATE_CRYPTO_SESSION: any size, no fds', () => {
    validate(FrontendReq.CREATE_CRYPTO_SESSION, new Uint8Array(0), 0)
    validate(FrontendReq.CREATE_CRYPTO_SESSION, new Uint8Array(700), 0)
    expect(codeOf(() => validate(FrontendReq.CREATE_CRYPTO_SESSION, new Uint8Array(8), 1))).toBe('EVHOST_BAD_FDS')
  })
})

describe('payload codecs', () => {
  it('u64 round-trips the full range', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
      expect(decodeU64(encodeU64(v))).toBe(v)
    }))
    expect(codeOf(() => encodeU64(-1n))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => encodeU64(1n << 64n))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeU64(new Uint8Array(4)))).toBe('EVHOST_BAD_SIZE')
  })

  it('vring state round-trips', () => {
    fc.assert(fc.property(u32, u32, (index, num) => {
      expect(decodeVringState(encodeVringState({ index, num }))).toEqual({ index, num })
    }))
    expect(codeOf(() => encodeVringState({ index: -1, num: 0 }))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeVringState(new Uint8Array(9)))).toBe('EVHOST_BAD_SIZE')
  })

  it('vring address round-trips, with the spec field order', () => {
    fc.assert(fc.property(u32, u32, u53, u53, u53, u53, (index, flags, descUva, usedUva, availUva, logGpa) => {
      const a = { index, flags, descUva, usedUva, availUva, logGpa }
      expect(decodeVringAddr(encodeVringAddr(a))).toEqual(a)
    }))
    const b = encodeVringAddr({ index: 1, flags: 0, descUva: 0x11, usedUva: 0x22, availUva: 0x33, logGpa: 0x44 })
    const dv = new DataView(b.buffer)
    expect([dv.getUint32(0, true), dv.getUint32(8, true), dv.getUint32(16, true), dv.getUint32(24, true), dv.getUint32(32, true)]).toEqual([1, 0x11, 0x22, 0x33, 0x44])
  })

  it('rejects u64 addresses at or above 2^53', () => {
    for (const off of [8, 16, 24, 32]) {
      const b = encodeVringAddr({ index: 0, flags: 0, descUva: 0, usedUva: 0, availUva: 0, logGpa: 0 })
      new DataView(b.buffer).setBigUint64(off, 1n << 53n, true)
      expect(codeOf(() => decodeVringAddr(b))).toBe('EVHOST_BAD_PAYLOAD')
      new DataView(b.buffer).setBigUint64(off, (1n << 53n) - 1n, true)
      decodeVringAddr(b)
    }
    expect(codeOf(() => encodeVringAddr({ index: 0, flags: 0, descUva: 2 ** 53, usedUva: 0, availUva: 0, logGpa: 0 }))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => encodeVringAddr({ index: 0, flags: 0, descUva: 1.5, usedUva: 0, availUva: 0, logGpa: 0 }))).toBe('EVHOST_BAD_PAYLOAD')
  })

  it('memory table round-trips 1..8 regions', () => {
    fc.assert(fc.property(fc.array(region, { minLength: 1, maxLength: MAX_MEM_REGIONS }), (regions) => {
      const p = encodeMemTable(regions)
      expect(p.length).toBe(8 + 32 * regions.length)
      expect(decodeMemTable(p)).toEqual(regions)
    }))
  })

  it('memory table rejects bad counts, sizes and regions', () => {
    const one: MemRegion = { gpa: 0, size: 0x1000, uva: 0x7f00_0000_0000, mmapOffset: 0 }
    expect(codeOf(() => encodeMemTable([]))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => encodeMemTable(Array(9).fill(one)))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeMemTable(new Uint8Array(4)))).toBe('EVHOST_BAD_SIZE')
    const p = encodeMemTable([one, one])
    expect(codeOf(() => decodeMemTable(p.subarray(0, p.length - 1)))).toBe('EVHOST_BAD_SIZE')
    const zero = encodeMemTable([one])
    new DataView(zero.buffer).setUint32(0, 0, true)
    expect(codeOf(() => decodeMemTable(zero))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeMemTable(encodeMemTable([{ ...one, size: 0 }])))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeMemTable(encodeMemTable([{ ...one, gpa: 2 ** 53 - 0x1000, size: 0x1000 }])))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeMemTable(encodeMemTable([{ ...one, uva: 2 ** 52, size: 2 ** 52 }])))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeMemTable(encodeMemTable([{ ...one, mmapOffset: 2 ** 53 - 1 }])))).toBe('EVHOST_BAD_PAYLOAD')
    const huge = encodeMemTable([one])
    new DataView(huge.buffer).setBigUint64(8 + 8, 1n << 60n, true)
    expect(codeOf(() => decodeMemTable(huge))).toBe('EVHOST_BAD_PAYLOAD')
  })

  it('single memory region round-trips after its u64 padding', () => {
    fc.assert(fc.property(region, (r) => {
      const p = encodeSingleMemRegion(r)
      expect(p.length).toBe(40)
      expect(new DataView(p.buffer).getBigUint64(0, true)).toBe(0n)
      expect(decodeSingleMemRegion(p)).toEqual(r)
    }))
    expect(codeOf(() => decodeSingleMemRegion(new Uint8Array(32)))).toBe('EVHOST_BAD_SIZE')
  })

  it('config round-trips and copies its data', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_CONFIG_SIZE }).chain((offset) =>
      fc.tuple(fc.constant(offset), fc.uint8Array({ maxLength: MAX_CONFIG_SIZE - offset }), fc.constantFrom(0, 1))), ([offset, data, flags]) => {
      const p = encodeConfig({ offset, flags, data })
      const c = decodeConfig(p)
      expect(c).toEqual({ offset, size: data.length, flags, data })
      p.fill(0xee)
      expect(c.data).toEqual(data)
    }))
  })

  it('config rejects inconsistent sizes and out-of-range accesses', () => {
    expect(codeOf(() => decodeConfig(new Uint8Array(11)))).toBe('EVHOST_BAD_SIZE')
    const p = encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(8) })
    new DataView(p.buffer).setUint32(4, 9, true)
    expect(codeOf(() => decodeConfig(p))).toBe('EVHOST_BAD_SIZE')
    const far = encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(8) })
    new DataView(far.buffer).setUint32(0, 0xffff_fff0, true)
    expect(codeOf(() => decodeConfig(far))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => encodeConfig({ offset: 250, flags: 0, data: new Uint8Array(8) }))).toBe('EVHOST_BAD_PAYLOAD')
  })

  it('inflight description round-trips (24 bytes)', () => {
    fc.assert(fc.property(u53, u53, fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), (mmapSize, mmapOffset, numQueues, queueSize) => {
      const i = { mmapSize, mmapOffset, numQueues, queueSize }
      const p = encodeInflight(i)
      expect(p.length).toBe(24)
      expect(decodeInflight(p)).toEqual(i)
    }))
    expect(codeOf(() => encodeInflight({ mmapSize: 0, mmapOffset: 0, numQueues: 0x10000, queueSize: 0 }))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeInflight(new Uint8Array(20)))).toBe('EVHOST_BAD_SIZE')
  })

  it('log description round-trips (16 bytes)', () => {
    fc.assert(fc.property(u53, u53, (mmapSize, mmapOffset) => {
      expect(decodeLog(encodeLog({ mmapSize, mmapOffset }))).toEqual({ mmapSize, mmapOffset })
    }))
    expect(codeOf(() => decodeLog(new Uint8Array(8)))).toBe('EVHOST_BAD_SIZE')
  })

  it('vring fd payload round-trips and rejects reserved bits', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 255 }), fc.boolean(), (index, noFd) => {
      const p = encodeVringFd({ index, noFd })
      expect(new DataView(p.buffer).getBigUint64(0, true)).toBe(BigInt(index | (noFd ? VRING_NOFD_MASK : 0)))
      expect(decodeVringFd(p)).toEqual({ index, noFd })
    }))
    expect(codeOf(() => encodeVringFd({ index: 256, noFd: false }))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeVringFd(encodeU64(0x200n)))).toBe('EVHOST_BAD_PAYLOAD')
    expect(codeOf(() => decodeVringFd(encodeU64(1n << 40n)))).toBe('EVHOST_BAD_PAYLOAD')
  })
})

/** The decoder the back-end would apply to each request's payload after validateMessage. */
const decoders: Partial<Record<number, (p: Uint8Array) => unknown>> = {
  [FrontendReq.SET_FEATURES]: decodeU64,
  [FrontendReq.SET_PROTOCOL_FEATURES]: decodeU64,
  [FrontendReq.SET_STATUS]: decodeU64,
  [FrontendReq.SET_MEM_TABLE]: decodeMemTable,
  [FrontendReq.SET_LOG_BASE]: decodeLog,
  [FrontendReq.SET_VRING_NUM]: decodeVringState,
  [FrontendReq.SET_VRING_BASE]: decodeVringState,
  [FrontendReq.GET_VRING_BASE]: decodeVringState,
  [FrontendReq.SET_VRING_ENABLE]: decodeVringState,
  [FrontendReq.SET_VRING_ADDR]: decodeVringAddr,
  [FrontendReq.SET_VRING_KICK]: decodeVringFd,
  [FrontendReq.SET_VRING_CALL]: decodeVringFd,
  [FrontendReq.SET_VRING_ERR]: decodeVringFd,
  [FrontendReq.GET_CONFIG]: decodeConfig,
  [FrontendReq.SET_CONFIG]: decodeConfig,
  [FrontendReq.GET_INFLIGHT_FD]: decodeInflight,
  [FrontendReq.SET_INFLIGHT_FD]: decodeInflight,
  [FrontendReq.ADD_MEM_REG]: decodeSingleMemRegion,
  [FrontendReq.REM_MEM_REG]: decodeSingleMemRegion,
}

/** Decode a whole message as the back-end would; returns nothing, throws only VhostUserError. */
function pipeline(bytes: Uint8Array, fdCount: number): void {
  const h = decodeHeader(bytes)
  const payload = bytes.subarray(HEADER_SIZE, HEADER_SIZE + h.size)
  validateMessage(h, payload, fdCount)
  decoders[h.request]?.(payload)
}

function onlyVhostUserErrors(bytes: Uint8Array, fdCount: number): void {
  try {
    pipeline(bytes, fdCount)
  } catch (err) {
    if (!(err instanceof VhostUserError)) throw err
  }
}

describe('fuzz: hostile bytes only ever raise VhostUserError', () => {
  it('random bytes, sizes and fd counts', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 400 }), fc.integer({ min: 0, max: 12 }), onlyVhostUserErrors), { numRuns: 5000 })
  })

  it('well-formed headers of known requests with random payloads', () => {
    const known = Object.values(FrontendReq)
    fc.assert(fc.property(
      fc.constantFrom(...known),
      fc.constantFrom(VERSION, VERSION | FLAG_NEED_REPLY, VERSION | FLAG_REPLY),
      fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(0, 8, 16, 24, 40, 72, 264).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }))),
      fc.integer({ min: 0, max: 9 }),
      (request, flags, payload, fds) => {
        onlyVhostUserErrors(encodeMessage(request, flags, payload), fds)
      },
    ), { numRuns: 20000 })
  })

  it('valid messages with one field mutated', () => {
    const valid: [Uint8Array, number][] = [
      [encodeMessage(FrontendReq.SET_MEM_TABLE, VERSION, encodeMemTable([{ gpa: 0, size: 0x10000, uva: 0x7f00_0000_0000, mmapOffset: 0 }, { gpa: 0x20000, size: 0x10000, uva: 0x7f00_0001_0000, mmapOffset: 0x10000 }])), 2],
      [encodeMessage(FrontendReq.SET_VRING_ADDR, VERSION, encodeVringAddr({ index: 0, flags: 0, descUva: 0x1000, usedUva: 0x2000, availUva: 0x3000, logGpa: 0 })), 0],
      [encodeMessage(FrontendReq.GET_CONFIG, VERSION, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(60) })), 0],
      [encodeMessage(FrontendReq.SET_VRING_KICK, VERSION, encodeVringFd({ index: 1, noFd: false })), 1],
      [encodeMessage(FrontendReq.ADD_MEM_REG, VERSION, encodeSingleMemRegion({ gpa: 0, size: 0x1000, uva: 0x1000, mmapOffset: 0 })), 1],
      [encodeMessage(FrontendReq.SET_INFLIGHT_FD, VERSION, encodeInflight({ mmapSize: 4096, mmapOffset: 0, numQueues: 1, queueSize: 128 })), 1],
    ]
    for (const [m, fds] of valid) pipeline(m, fds)
    fc.assert(fc.property(fc.constantFrom(...valid), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: -1, max: 1 }), ([m, fds], at, byte, fdDelta) => {
      const copy = m.slice()
      copy[at % copy.length] = byte
      onlyVhostUserErrors(copy, Math.max(0, fds + fdDelta))
    }), { numRuns: 20000 })
  })
})
