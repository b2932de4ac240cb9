/**
 * The load generator against the real server: it moves the I/Os it reports, covers the disk
 * exactly once in a sequential run with an I/O limit, counts failed requests as errors, owns its
 * queues only while it runs, refuses loads the device cannot take, and fails cleanly when the
 * back-end dies. Functional only: nothing here asserts speed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { VIRTIO_BLK_F_RO, VIRTIO_BLK_S_OK } from '../../src/blk/spec.js'
import { VhostUserClientError, loadMemoryBytes, runLoad, type LoadOptions } from '../../src/frontend/index.js'
import { featureBit } from '../../src/vhost/messages.js'
import { connectClient, withClient } from '../helpers/frontend.js'
import { startServer, type ServerProcess } from '../helpers/server.js'

const MiB = 1 << 20
const base: LoadOptions = { rw: 'randread', bs: 4096, iodepth: 8, queues: 1, runtimeMs: 300 }

async function rejectCode(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(VhostUserClientError)
    return (err as VhostUserClientError).code
  }
  throw new Error('expected a rejection')
}

describe('runLoad against a memory disk', () => {
  let server: ServerProcess

  beforeAll(async () => {
    server = await startServer(['--memory', '8M', '--num-queues', '2'])
  })

  afterAll(async () => {
    await server?.stop()
  })

  it('writes every block exactly once with a sequential I/O limit, then hands the queue back', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const r = await runLoad(c, { rw: 'write', bs: 64 * 1024, iodepth: 4, queues: 1, runtimeMs: 60_000, ioLimit: 128 })
      expect(r.ios).toBe(128)
      expect(r.bytes).toBe(8 * MiB)
      expect(r.errors).toBe(0)
      expect(r.latency.count).toBe(128)
      // The generator fills write buffers with 0xa5: the first and last blocks were both written.
      for (const sector of [0, 8 * 2048 - 128]) {
        const { status, data } = await c.read(0, sector, 64 * 1024)
        expect(status).toBe(VIRTIO_BLK_S_OK)
        expect(data.every((b) => b === 0xa5)).toBe(true)
      }
    })
  })

  it('keeps requests in flight on every queue for the runtime and reports sane figures', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      let opened = 0
      let closed = 0
      const r = await runLoad(c, { ...base, queues: 2, rampMs: 100, onWindowStart: () => opened++, onWindowEnd: () => closed++ })
      expect([opened, closed]).toEqual([1, 1])
      expect(r.ios).toBeGreaterThan(0)
      expect(r.errors).toBe(0)
      expect(r.bytes).toBe(r.ios * 4096)
      expect(r.elapsedMs).toBeGreaterThanOrEqual(250)
      expect(r.latency.count).toBe(r.ios)
      expect(r.latency.percentile(50)).toBeLessThanOrEqual(r.latency.percentile(99))
      expect(r.latency.percentile(99)).toBeLessThanOrEqual(r.latency.max())
      expect(r.wakeups).toBeGreaterThan(0)
      expect(r.cpuUserUs + r.cpuSystemUs).toBeGreaterThan(0)
      // The promise API works again on both queues.
      expect((await c.read(1, 0, 512)).status).toBe(VIRTIO_BLK_S_OK)
    })
  })

  it('refuses the promise API on a claimed queue while a load runs', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const load = runLoad(c, base)
      expect(await rejectCode(c.read(0, 0, 512))).toBe('EFRONTEND_BUSY')
      expect(() => c.claimQueue(0, { onCall: () => {}, onClose: () => {} })).toThrow(expect.objectContaining({ code: 'EFRONTEND_BUSY' }))
      expect((await c.read(1, 0, 512)).status).toBe(VIRTIO_BLK_S_OK)
      expect((await load).ios).toBeGreaterThan(0)
    })
  })

  it('rejects options the device cannot take', async () => {
    await withClient(server.socketPath, { queueSize: 16, indirect: false }, async (c) => {
      expect(await rejectCode(runLoad(c, { ...base, bs: 1000 }))).toBe('EFRONTEND_ARGUMENT')
      expect(await rejectCode(runLoad(c, { ...base, queues: 3 }))).toBe('EFRONTEND_ARGUMENT')
      // Three direct descriptors per request: 8 requests need 24 > 16.
      expect(await rejectCode(runLoad(c, { ...base, iodepth: 8 }))).toBe('EFRONTEND_ARGUMENT')
      expect(await rejectCode(runLoad(c, { ...base, rw: 'randwrite', indirect: true }))).toBe('EFRONTEND_ARGUMENT')
      expect((await runLoad(c, { ...base, iodepth: 5, runtimeMs: 100 })).errors).toBe(0)
    })
  })

  it('needs guest RAM as loadMemoryBytes says', async () => {
    const opts = { ...base, bs: MiB, iodepth: 8, queues: 2 }
    await withClient(server.socketPath, { memorySize: loadMemoryBytes(opts) }, async (c) => {
      expect((await runLoad(c, { ...opts, runtimeMs: 100 })).ios).toBeGreaterThan(0)
    })
    await withClient(server.socketPath, { memorySize: 4 * MiB }, async (c) => {
      expect(await rejectCode(runLoad(c, opts))).toBe('EFRONTEND_ARGUMENT')
      expect((await c.read(0, 0, 512)).status).toBe(VIRTIO_BLK_S_OK)
    })
  })
})

describe('runLoad error paths', () => {
  it('counts requests the device fails as errors', async () => {
    const server = await startServer(['--memory', '8M', '--read-only'])
    try {
      await withClient(server.socketPath, {}, async (c) => {
        expect(await rejectCode(runLoad(c, { ...base, rw: 'randwrite' }))).toBe('EFRONTEND_ARGUMENT')
      })
      // Hide VIRTIO_BLK_F_RO from the generator: the device then fails every write.
      await withClient(server.socketPath, { featureMask: ~featureBit(VIRTIO_BLK_F_RO) }, async (c) => {
        const r = await runLoad(c, { ...base, rw: 'randwrite' })
        expect(r.ios).toBeGreaterThan(0)
        expect(r.errors).toBe(r.ios)
      })
    } finally {
      await server.stop()
    }
  })

  it('rejects with EFRONTEND_CLOSED when the back-end dies mid-run', async () => {
    const server = await startServer(['--memory', '8M'])
    const c = await connectClient(server.socketPath)
    try {
      const load = runLoad(c, { ...base, runtimeMs: 10_000 })
      setTimeout(() => server.proc.kill('SIGKILL'), 200)
      expect(await rejectCode(load)).toBe('EFRONTEND_CLOSED')
    } finally {
      await c.close()
      await server.stop()
    }
  })
})
