/**
 * Hostile frontends against the real server process: each malformed or illegal message on its
 * own connection. The server must close that connection (or NACK when asked to reply), close
 * every fd it was sent, keep listening, and serve the next frontend normally.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as native from '../../src/native/index.js'
import {
  FLAG_NEED_REPLY, FrontendReq, VERSION, encodeU64, encodeVringAddr, encodeVringState, type MemRegion,
} from '../../src/vhost/messages.js'
import { RAW_UVA, RawFrontend, rawRam, type RawRam } from '../helpers/raw-frontend.js'
import { startServer, waitFor, type ServerProcess } from '../helpers/server.js'

const RAM = 1 << 20

let server: ServerProcess
let baselineFds = 0

beforeAll(async () => {
  server = await startServer(['--memory', '8M', '--num-queues', '2', '--log-level', 'info'])
  baselineFds = server.fdCount()
})

afterAll(async () => {
  await server?.stop('SIGKILL')
})

/** A SET_MEM_TABLE payload written by hand (the encoder refuses what these tests need). */
function rawMemTable(count: number, regions: MemRegion[]): Uint8Array {
  const out = new Uint8Array(8 + 32 * regions.length)
  const dv = new DataView(out.buffer)
  dv.setUint32(0, count, true)
  regions.forEach((r, i) => {
    dv.setBigUint64(8 + 32 * i, BigInt(r.gpa), true)
    dv.setBigUint64(16 + 32 * i, BigInt(r.size), true)
    dv.setBigUint64(24 + 32 * i, BigInt(r.uva), true)
    dv.setBigUint64(32 + 32 * i, BigInt(r.mmapOffset), true)
  })
  return out
}

function vringFd(index: number, noFd = false): Uint8Array {
  return encodeU64(BigInt(index | (noFd ? 0x100 : 0)))
}

function addr(index: number, desc: number, avail: number, used: number): Uint8Array {
  return encodeVringAddr({ index, flags: 0, descUva: desc, availUva: avail, usedUva: used, logGpa: 0 })
}

type Hostile = (c: RawFrontend, ram: RawRam) => Promise<void> | void

const BAD_INDEX = 200

/** Each case leaves the connection in a state the server must close. */
const cases: Array<[string, Hostile]> = [
  ['SET_MEM_TABLE with 0 regions', (c) => c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(0, []))],
  ['SET_MEM_TABLE with 9 regions', (c, ram) => {
    const regions = Array.from({ length: 9 }, (_, i) => ({ gpa: i * RAM, size: RAM, uva: RAW_UVA + i * RAM, mmapOffset: 0 }))
    c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(9, regions), Array(8).fill(ram.fd))
  }],
  ['a zero-sized region', (c, ram) => c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(1, [{ ...ram.region, size: 0 }]), [ram.fd])],
  ['overlapping regions', (c, ram) => {
    const a = ram.region
    const b = { gpa: RAM / 2, size: RAM / 2, uva: RAW_UVA + 4 * RAM, mmapOffset: 0 }
    c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(2, [a, b]), [ram.fd, ram.fd])
  }],
  ['an mmap offset past the end of the fd', (c, ram) =>
    c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(1, [{ ...ram.region, mmapOffset: 2 * RAM }]), [ram.fd])],
  ['a region longer than its fd', (c, ram) =>
    c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(1, [{ ...ram.region, size: 4 * RAM }]), [ram.fd])],
  ['a region fd that cannot be mapped', (c, ram) => {
    const efd = native.eventfdCreate()
    c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(1, [ram.region]), [efd])
    native.close(efd)
  }],
  ...(['SET_VRING_NUM', 'SET_VRING_BASE', 'GET_VRING_BASE', 'SET_VRING_ENABLE'] as const).map(
    (name): [string, Hostile] => [`${name} with vring index ${BAD_INDEX}`, async (c, ram) => {
      await c.handshake(ram)
      c.send(FrontendReq[name], encodeVringState({ index: BAD_INDEX, num: 1 }))
    }],
  ),
  [`SET_VRING_ADDR with vring index ${BAD_INDEX}`, async (c, ram) => {
    await c.handshake(ram)
    c.send(FrontendReq.SET_VRING_ADDR, addr(BAD_INDEX, RAW_UVA, RAW_UVA + 4096, RAW_UVA + 8192))
  }],
  ...(['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const).map(
    (name): [string, Hostile] => [`${name} with vring index ${BAD_INDEX}`, async (c, ram) => {
      await c.handshake(ram)
      const efd = native.eventfdCreate()
      c.send(FrontendReq[name], vringFd(BAD_INDEX), [efd])
      native.close(efd)
    }],
  ),
  ...[0, 3, 65536].map((num): [string, Hostile] => [`ring size ${num}`, async (c, ram) => {
    await c.handshake(ram)
    c.send(FrontendReq.SET_VRING_NUM, encodeVringState({ index: 0, num }))
  }]),
  ['ring addresses outside guest memory', async (c, ram) => {
    await c.handshake(ram)
    c.send(FrontendReq.SET_VRING_NUM, encodeVringState({ index: 0, num: 256 }))
    c.send(FrontendReq.SET_VRING_ADDR, addr(0, RAW_UVA + 8 * RAM, RAW_UVA + 4096, RAW_UVA + 8192))
  }],
  ['a descriptor table straddling the end of guest memory', async (c, ram) => {
    await c.handshake(ram)
    c.send(FrontendReq.SET_VRING_NUM, encodeVringState({ index: 0, num: 256 }))
    c.send(FrontendReq.SET_VRING_ADDR, addr(0, RAW_UVA + RAM - 1024, RAW_UVA, RAW_UVA + 8192))
    const efd = native.eventfdCreate()
    c.send(FrontendReq.SET_VRING_KICK, vringFd(0), [efd])
    native.close(efd)
  }],
  ['an fd attached to SET_OWNER', (c) => {
    const efd = native.eventfdCreate()
    c.send(FrontendReq.SET_OWNER, new Uint8Array(0), [efd])
    native.close(efd)
  }],
  ['SET_VRING_CALL without its fd', async (c, ram) => {
    await c.handshake(ram)
    c.send(FrontendReq.SET_VRING_CALL, vringFd(0))
  }],
  ['SET_MEM_TABLE with fewer fds than regions', (c, ram) => c.send(FrontendReq.SET_MEM_TABLE, rawMemTable(1, [ram.region]))],
  ['a size field that disagrees with the layout', (c) => c.send(FrontendReq.SET_VRING_NUM, new Uint8Array(16))],
  ['a size field above the largest payload', (c) => c.sendBytes(Uint8Array.of(8, 0, 0, 0, 1, 0, 0, 0, 0x88, 0x13, 0, 0))],
  ['an unknown request code', (c) => c.send(999)],
  ['a reply flag on a request', (c) => c.send(FrontendReq.GET_FEATURES, new Uint8Array(0), [], VERSION | 0x4)],
  ['a wrong version', (c) => c.send(FrontendReq.GET_FEATURES, new Uint8Array(0), [], 0x2)],
  ['features never offered', (c) => c.send(FrontendReq.SET_FEATURES, encodeU64(1n << 60n))],
  ['a kick before the ring is set up', async (c, ram) => {
    await c.handshake(ram)
    const efd = native.eventfdCreate()
    c.send(FrontendReq.SET_VRING_KICK, vringFd(0), [efd])
    native.close(efd)
  }],
]

describe('each hostile message closes only its own connection', () => {
  it.each(cases)('%s', async (_name, hostile) => {
    const ram = rawRam(RAM)
    const c = RawFrontend.connect(server.socketPath)
    try {
      await hostile(c, ram)
      expect((await c.outcome(3000)).kind).toBe('closed')
    } finally {
      c.close()
      native.close(ram.fd)
    }
    await waitFor(() => server.fdCount() === baselineFds, 3000, `server fds back to ${baselineFds} (now ${server.fdCount()})`)
  })

  it('a connection that closes in the middle of a message', async () => {
    const c = RawFrontend.connect(server.socketPath)
    c.sendBytes(Uint8Array.of(3, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 2, 3))
    c.close()
    await waitFor(() => server.fdCount() === baselineFds, 3000, 'server fds back to baseline')
  })

  it('with REPLY_ACK, a refused message gets a NACK and the connection lives on', async () => {
    const ram = rawRam(RAM)
    const c = RawFrontend.connect(server.socketPath)
    try {
      await c.handshake(ram, true)
      c.send(FrontendReq.SET_VRING_NUM, encodeVringState({ index: 0, num: 3 }), [], VERSION | FLAG_NEED_REPLY)
      const nack = await c.outcome()
      expect(nack.kind).toBe('reply')
      expect(nack.kind === 'reply' && new DataView(nack.payload.buffer).getBigUint64(0, true)).toBe(1n)
      c.send(FrontendReq.SET_VRING_NUM, encodeVringState({ index: 0, num: 256 }), [], VERSION | FLAG_NEED_REPLY)
      const ack = await c.outcome()
      expect(ack.kind === 'reply' && new DataView(ack.payload.buffer).getBigUint64(0, true)).toBe(0n)
      const features = await c.call(FrontendReq.GET_FEATURES)
      expect(features).toHaveLength(8)
    } finally {
      c.close()
      native.close(ram.fd)
    }
  })

  it('the server is still up and a well-behaved frontend is served', async () => {
    const ram = rawRam(RAM)
    const c = RawFrontend.connect(server.socketPath)
    try {
      await c.handshake(ram, true)
      expect(new DataView((await c.call(FrontendReq.GET_QUEUE_NUM)).buffer).getBigUint64(0, true)).toBe(2n)
    } finally {
      c.close()
      native.close(ram.fd)
    }
    await waitFor(() => server.fdCount() === baselineFds, 3000, 'server fds back to baseline')
    expect(server.proc.exitCode).toBeNull()
  })
})


