/**
 * The frontend against the reference back-end, qemu-storage-daemon's vhost-user-blk export: the
 * handshake, config space, I/O on several queues and sizes, flush, GET_ID, discard, write-zeroes,
 * control messages, and cleanup. Skipped (with a printed reason) where qemu-storage-daemon is not
 * installed, except on CI (CI=true), where its absence fails.
 */
import { describe, it, expect } from 'vitest'
import fs from 'node:fs'
import { VIRTIO_BLK_F_MQ, VIRTIO_BLK_S_OK, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, BLK_CONFIG_OFFSETS } from '../../src/blk/spec.js'
import { VhostUserClientError } from '../../src/frontend/index.js'
import { FrontendReq, ProtocolFeature, VERSION, decodeU64, hasFeature } from '../../src/vhost/messages.js'
import { connectClient, findQsd, openFdCount, pattern, withClient, withQsd } from '../helpers/frontend.js'

const QSD = findQsd()
const onCI = process.env.CI === 'true'
if (QSD === null && !onCI) console.log('test/frontend/qsd.test.ts skipped: qemu-storage-daemon is not installed')

/** Resolves with the rejection's code (fails when the promise resolves). */
async function rejectCode(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(VhostUserClientError)
    return (err as VhostUserClientError).code
  }
  throw new Error('expected a rejection')
}

describe.runIf(QSD === null && onCI)('qemu-storage-daemon on CI', () => {
  it('is installed', () => {
    expect.fail('qemu-storage-daemon is missing, and CI=true requires it')
  })
})

describe.skipIf(QSD === null)('frontend against qemu-storage-daemon', () => {
  it('negotiates like QEMU and reads the config', async () => {
    await withQsd({ numQueues: 2, size: 32 << 20 }, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        expect(c.config.capacity).toBe((32 << 20) / 512)
        expect(c.config.numQueues).toBe(2)
        expect(c.config.blkSize).toBe(512)
        expect(c.config.segMax).toBe(126)
        expect(c.numQueues).toBe(2)
        for (const bit of [VIRTIO_F_VERSION_1, VIRTIO_BLK_F_MQ, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC]) {
          expect(hasFeature(c.features, bit)).toBe(true)
        }
        expect(hasFeature(c.protocolFeatures, ProtocolFeature.CONFIG)).toBe(true)
        expect(hasFeature(c.protocolFeatures, ProtocolFeature.REPLY_ACK)).toBe(true)
        expect(hasFeature(c.protocolFeatures, ProtocolFeature.MQ)).toBe(true)
      })
    })
  })

  it('writes and reads back several sizes on every queue', async () => {
    await withQsd({ numQueues: 2 }, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        let seed = 1
        for (const bytes of [512, 4096, 65536, 1 << 20]) {
          for (let q = 0; q < c.numQueues; q++) {
            const data = pattern(bytes, seed++)
            const sector = seed * 4096
            expect(await c.write(q, sector, data)).toBe(VIRTIO_BLK_S_OK)
            const back = await c.read((q + 1) % c.numQueues, sector, bytes)
            expect(back.status).toBe(VIRTIO_BLK_S_OK)
            expect(Buffer.compare(back.data, data)).toBe(0)
          }
        }
        // The bytes really reached the image.
        expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
        const img = fs.readFileSync(qsd.imagePath as string)
        expect(Buffer.compare(img.subarray(2 * 4096 * 512, 2 * 4096 * 512 + 512), pattern(512, 1))).toBe(0)
      })
    })
  })

  it.each([
    { name: 'direct descriptors and no event index (ring fills up)', opts: { indirect: false, eventIdx: false }, bytes: 8192 },
    { name: 'no REPLY_ACK', opts: { replyAck: false }, bytes: 8192 },
    { name: 'memory slots (ADD_MEM_REG) over two regions', opts: { memSlots: true, regions: 2 }, bytes: 8192 },
    { name: 'a tiny ring with more requests than descriptors', opts: { queueSize: 4 }, bytes: 8192 },
    // 64 x 64 KiB in flight exceeds 3 x 1 MiB of guest RAM: buffers spread over every region and wait for memory.
    { name: 'three small memory regions', opts: { regions: 3, memorySize: 3 << 20 }, bytes: 65536 },
  ])('keeps data intact with $name', async ({ opts, bytes }) => {
    await withQsd({ numQueues: 1 }, async (qsd) => {
      await withClient(qsd.socketPath, opts, async (c) => {
        const n = 64
        const step = bytes / 512
        const writes = Array.from({ length: n }, (_, i) => c.write(0, i * step, pattern(bytes, 100 + i)))
        expect(await Promise.all(writes)).toEqual(Array(n).fill(VIRTIO_BLK_S_OK))
        const reads = await Promise.all(Array.from({ length: n }, (_, i) => c.read(0, i * step, bytes)))
        reads.forEach((r, i) => {
          expect(r.status).toBe(VIRTIO_BLK_S_OK)
          expect(Buffer.compare(r.data, pattern(bytes, 100 + i))).toBe(0)
        })
        if ('replyAck' in opts) expect(hasFeature(c.protocolFeatures, ProtocolFeature.REPLY_ACK)).toBe(false)
        if ('memSlots' in opts) expect(hasFeature(c.protocolFeatures, ProtocolFeature.CONFIGURE_MEM_SLOTS)).toBe(true)
      })
    })
  })

  it('flushes and reports qsd\'s fixed serial', async () => {
    await withQsd({}, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
        expect(await c.getId(0)).toEqual({ status: VIRTIO_BLK_S_OK, id: 'vhost_user_blk' })
      })
    })
  })

  it('discards and writes zeroes over a single range', async () => {
    await withQsd({}, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        expect(await c.write(0, 64, pattern(64 * 512, 7))).toBe(VIRTIO_BLK_S_OK)
        expect(await c.discard(0, [{ sector: 64, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
        expect(await c.writeZeroes(0, [{ sector: 80, sectors: 16 }])).toBe(VIRTIO_BLK_S_OK)
        expect(await c.writeZeroes(0, [{ sector: 100, sectors: 4, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }])).toBe(VIRTIO_BLK_S_OK)
        const r = await c.read(0, 64, 64 * 512)
        const want = pattern(64 * 512, 7)
        want.fill(0, 16 * 512, 32 * 512)
        want.fill(0, 36 * 512, 40 * 512)
        // Discarded sectors may read as anything; compare the rest.
        expect(Buffer.compare(r.data.subarray(8 * 512), want.subarray(8 * 512))).toBe(0)
      })
    })
  })

  it('reads and writes config space and reports ring positions', async () => {
    await withQsd({ numQueues: 2 }, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        // libvhost-user ignores the GET_CONFIG offset (QEMU always reads from 0): read from 0.
        expect((await c.getConfig(0, 60))[BLK_CONFIG_OFFSETS.wce]).toBe(0)
        await c.setConfig(BLK_CONFIG_OFFSETS.wce, Uint8Array.of(1))
        expect((await c.getConfig(0, 60))[BLK_CONFIG_OFFSETS.wce]).toBe(1)
        await c.read(0, 0, 512)
        await c.read(0, 0, 512)
        await c.flush(0)
        expect(await c.getVringBase(0)).toBe(3)
        expect(await c.getVringBase(1)).toBe(0)
        const reply = await c.request(FrontendReq.GET_QUEUE_NUM)
        expect(decodeU64(reply!.payload)).toBe(2n)
      })
    })
  })

  it('submits raw chains', async () => {
    await withQsd({}, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        const hdr = new Uint8Array(16)
        new DataView(hdr.buffer).setUint32(0, 8, true) // VIRTIO_BLK_T_GET_ID
        const r = await c.submitRaw(0, [hdr], [20, 1], { indirect: false })
        // qsd writes the serial and its NUL; the rest keeps the client's 0xff fill.
        expect(Buffer.from(r.in[0].subarray(0, 15)).toString('latin1')).toBe('vhost_user_blk\0')
        expect(r.in[1][0]).toBe(VIRTIO_BLK_S_OK)
        expect(r.usedLen).toBeGreaterThan(0)
      })
    })
  })

  it('rejects bad arguments without touching the device', async () => {
    await withQsd({}, async (qsd) => {
      await withClient(qsd.socketPath, {}, async (c) => {
        expect(await rejectCode(c.read(0, 0, 100))).toBe('EFRONTEND_ARGUMENT')
        expect(await rejectCode(c.write(0, -1, new Uint8Array(512)))).toBe('EFRONTEND_ARGUMENT')
        expect(await rejectCode(c.read(5, 0, 512))).toBe('EFRONTEND_ARGUMENT')
        expect(await rejectCode(c.read(0, 0, 64 << 20))).toBe('EFRONTEND_ARGUMENT')
      })
      expect(await rejectCode(connectClient(qsd.socketPath, { numQueues: 2 }))).toBe('EFRONTEND_ARGUMENT')
      expect(await rejectCode(connectClient(qsd.socketPath, { queueSize: 100 }))).toBe('EFRONTEND_ARGUMENT')
    })
  })

  it('releases every fd it created, on close and on a failed connect', async () => {
    await withQsd({ numQueues: 2 }, async (qsd) => {
      const before = openFdCount()
      const c = await connectClient(qsd.socketPath, {})
      expect(openFdCount()).toBeGreaterThan(before)
      await c.read(1, 0, 4096)
      await c.close()
      await c.close()
      expect(openFdCount()).toBe(before)
      expect(await rejectCode(c.read(0, 0, 512))).toBe('EFRONTEND_CLOSED')
      expect(await rejectCode(connectClient(qsd.socketPath, { numQueues: 3 }))).toBe('EFRONTEND_ARGUMENT')
      expect(openFdCount()).toBe(before)
    })
    const before = openFdCount()
    await expect(connectClient('/nonexistent/vub.sock')).rejects.toMatchObject({ code: 'ENOENT' })
    expect(openFdCount()).toBe(before)
  })

  it('fails pending and later requests when the back-end goes away', async () => {
    await withQsd({}, async (qsd) => {
      const c = await connectClient(qsd.socketPath, {})
      try {
        await qsd.stop()
        expect(await rejectCode(c.request(FrontendReq.GET_FEATURES, undefined, { flags: VERSION }))).toBe('EFRONTEND_CLOSED')
        expect(await rejectCode(c.read(0, 0, 512))).toBe('EFRONTEND_CLOSED')
      } finally {
        await c.close()
      }
    })
  })
})
