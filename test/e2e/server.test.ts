/**
 * The real server process driven through src/frontend over a real Unix socket with real memfd
 * guest memory: the same protocol QEMU speaks. Every request type, request errors, read-only,
 * several queues in parallel, tag exhaustion, reconnect, memory slots, and clean teardown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { VhostUserBlkClient } from '../../src/frontend/index.js'
import {
  BLK_CONFIG_OFFSETS, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_IN, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, VIRTIO_RING_F_EVENT_IDX,
} from '../../src/blk/spec.js'
import { hasFeature } from '../../src/vhost/messages.js'
import { outHeader } from '../helpers/blk.js'
import { connectClient, pattern, withClient } from '../helpers/frontend.js'
import { problems, startServer, waitFor, type ServerProcess } from '../helpers/server.js'

const MiB = 1 << 20

describe('a memory disk served to a frontend', () => {
  let server: ServerProcess
  let baselineFds = 0

  beforeAll(async () => {
    server = await startServer(['--memory', '64M', '--num-queues', '4', '--serial', 'e2e-serial-0123'])
    baselineFds = server.fdCount()
  })

  afterAll(async () => {
    await server?.stop()
  })

  it('negotiates and reads the config the disk implies', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      expect(c.config.capacity).toBe((64 * MiB) / 512)
      expect(c.config.numQueues).toBe(4)
      expect(c.config.blkSize).toBe(512)
      expect(c.config.segMax).toBe(254)
      expect(c.config.sizeMax).toBeGreaterThan(0)
      expect(c.config.maxDiscardSeg).toBe(256)
      expect(c.config.maxWriteZeroesSeg).toBe(256)
      expect(c.config.writeZeroesMayUnmap).toBe(1)
      expect(hasFeature(c.features, VIRTIO_BLK_F_DISCARD)).toBe(true)
      expect(hasFeature(c.features, VIRTIO_BLK_F_WRITE_ZEROES)).toBe(true)
      expect(hasFeature(c.features, VIRTIO_BLK_F_RO)).toBe(false)
      expect(hasFeature(c.features, VIRTIO_RING_F_EVENT_IDX)).toBe(true)
    })
  })

  it('serves every request type', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const data = pattern(256 * 1024, 1)
      expect(await c.write(0, 2048, data)).toBe(VIRTIO_BLK_S_OK)
      const r = await c.read(0, 2048, data.length)
      expect(r.status).toBe(VIRTIO_BLK_S_OK)
      expect(Buffer.from(r.data).equals(Buffer.from(data))).toBe(true)
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
      expect(await c.getId(0)).toEqual({ status: VIRTIO_BLK_S_OK, id: 'e2e-serial-0123' })
      // Several ranges in one request: Linux sends up to 256; other backends accept one.
      expect(await c.discard(0, [{ sector: 2048, sectors: 8 }, { sector: 2064, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
      expect(await c.writeZeroes(0, [{ sector: 2080, sectors: 16, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }])).toBe(VIRTIO_BLK_S_OK)
      const after = await c.read(0, 2048, 64 * 512)
      const expected = Buffer.from(data.subarray(0, 64 * 512))
      expected.fill(0, 0, 8 * 512)
      expected.fill(0, 16 * 512, 24 * 512)
      expected.fill(0, 32 * 512, 48 * 512)
      expect(Buffer.from(after.data).equals(expected)).toBe(true)
    })
  })

  it('fails bad requests alone and keeps serving', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      expect((await c.read(0, (64 * MiB) / 512, 512)).status).toBe(VIRTIO_BLK_S_IOERR)
      expect((await c.read(0, (64 * MiB) / 512 - 1, 1024)).status).toBe(VIRTIO_BLK_S_IOERR)
      const odd = await c.submitRaw(0, [outHeader(VIRTIO_BLK_T_IN, 0)], [1000, 1])
      expect(odd.in[1][0]).toBe(VIRTIO_BLK_S_IOERR)
      const unknown = await c.submitRaw(0, [outHeader(77, 0)], [512, 1])
      expect(unknown.in[1][0]).toBe(VIRTIO_BLK_S_UNSUPP)
      const short = await c.submitRaw(0, [new Uint8Array(10)], [1])
      expect(short.in[0][0]).toBe(VIRTIO_BLK_S_IOERR)
      const noStatus = await c.submitRaw(0, [outHeader(VIRTIO_BLK_T_IN, 0), new Uint8Array(512)], [])
      expect(noStatus.usedLen).toBe(0)
      expect(await c.write(0, 0, pattern(512, 2))).toBe(VIRTIO_BLK_S_OK)
    })
  })

  it('serves 4 queues in parallel', async () => {
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      expect(c.numQueues).toBe(4)
      const jobs = [0, 1, 2, 3].map(async (q) => {
        for (let i = 0; i < 16; i++) {
          const sector = 8192 + q * 4096 + i * 64
          const data = pattern(32 * 1024, q * 100 + i)
          expect(await c.write(q, sector, data)).toBe(VIRTIO_BLK_S_OK)
        }
        const reads = Array.from({ length: 16 }, (_, i) => c.read(q, 8192 + q * 4096 + i * 64, 32 * 1024))
        const results = await Promise.all(reads)
        results.forEach((r, i) => expect(Buffer.from(r.data).equals(Buffer.from(pattern(32 * 1024, q * 100 + i)))).toBe(true))
      })
      await Promise.all(jobs)
    })
  })

  it('describes guest RAM with ADD_MEM_REG over several regions', async () => {
    await withClient(server.socketPath, { memSlots: true, regions: 3, memorySize: 24 * MiB }, async (c) => {
      const data = pattern(1 * MiB, 9)
      expect(await c.write(0, 40000, data)).toBe(VIRTIO_BLK_S_OK)
      expect(Buffer.from((await c.read(0, 40000, data.length)).data).equals(Buffer.from(data))).toBe(true)
    })
  })

  it('works without event index and without indirect descriptors', async () => {
    await withClient(server.socketPath, { eventIdx: false, indirect: false }, async (c) => {
      const writes = Array.from({ length: 20 }, (_, i) => c.write(0, 50000 + i * 8, pattern(4096, 50 + i)))
      expect(await Promise.all(writes)).toEqual(Array(20).fill(VIRTIO_BLK_S_OK))
      const r = await c.read(0, 50000 + 19 * 8, 4096)
      expect(Buffer.from(r.data).equals(Buffer.from(pattern(4096, 69)))).toBe(true)
    })
  })

  it('lets the guest switch the write cache mode (CONFIG_WCE)', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      expect((await c.getConfig(BLK_CONFIG_OFFSETS.wce, 1))[0]).toBe(1)
      await c.setConfig(BLK_CONFIG_OFFSETS.wce, Uint8Array.of(0))
      expect((await c.getConfig(BLK_CONFIG_OFFSETS.wce, 1))[0]).toBe(0)
    })
  })

  it('a new frontend sees what the previous one wrote (reconnect)', async () => {
    const data = pattern(64 * 1024, 77)
    await withClient(server.socketPath, {}, async (c) => expect(await c.write(0, 60000, data)).toBe(VIRTIO_BLK_S_OK))
    await withClient(server.socketPath, {}, async (c) => {
      expect(Buffer.from((await c.read(0, 60000, data.length)).data).equals(Buffer.from(data))).toBe(true)
    })
  })

  it('GET_VRING_BASE stops the ring and reports the next avail index', async () => {
    const c: VhostUserBlkClient = await connectClient(server.socketPath, { numQueues: 1 })
    try {
      for (let i = 0; i < 5; i++) await c.flush(0)
      expect(await c.getVringBase(0)).toBe(5)
    } finally {
      await c.close()
    }
  })

  it('released every fd and logged no problem', async () => {
    await waitFor(() => server.fdCount() === baselineFds, 3000, `server fds back to ${baselineFds}`)
    expect(problems(server)).toEqual([])
  })
})

describe('a read-only disk', () => {
  it('advertises RO, refuses writes, serves reads', async () => {
    const server = await startServer(['--memory', '8M', '--read-only'])
    try {
      await withClient(server.socketPath, {}, async (c) => {
        expect(hasFeature(c.features, VIRTIO_BLK_F_RO)).toBe(true)
        expect(await c.write(0, 0, pattern(4096, 3))).toBe(VIRTIO_BLK_S_IOERR)
        expect(await c.discard(0, [{ sector: 0, sectors: 8 }])).toBe(VIRTIO_BLK_S_IOERR)
        const r = await c.read(0, 0, 4096)
        expect(r.status).toBe(VIRTIO_BLK_S_OK)
        expect(r.data).toEqual(new Uint8Array(4096))
      })
    } finally {
      await server.stop()
    }
  })
})

describe('tags exhausted', () => {
  it('queue depth 2 under 60 requests in flight: all complete, nothing lost', async () => {
    const server = await startServer(['--memory', '16M', '--num-queues', '1', '--queue-depth', '2'])
    try {
      await withClient(server.socketPath, { queueSize: 256 }, async (c) => {
        const writes = Array.from({ length: 60 }, (_, i) => c.write(0, i * 16, pattern(8192, 200 + i)))
        expect(await Promise.all(writes)).toEqual(Array(60).fill(VIRTIO_BLK_S_OK))
        const reads = await Promise.all(Array.from({ length: 60 }, (_, i) => c.read(0, i * 16, 8192)))
        reads.forEach((r, i) => expect(Buffer.from(r.data).equals(Buffer.from(pattern(8192, 200 + i)))).toBe(true))
      })
    } finally {
      await server.stop()
    }
  })
})

describe('shutdown', () => {
  it('SIGTERM with a frontend connected: exits 0 and removes the socket', async () => {
    const server = await startServer(['--memory', '8M'])
    const c = await connectClient(server.socketPath)
    expect(await c.write(0, 0, pattern(4096, 4))).toBe(VIRTIO_BLK_S_OK)
    expect(await server.stop('SIGTERM')).toBe(0)
    await c.close()
  })
})
