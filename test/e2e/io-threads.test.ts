/**
 * The real server with its hardware queues on I/O threads (`--io-threads 2 --num-queues 4`),
 * driven through src/frontend: each ring served by the thread of its hardware queue, every
 * request type on every queue, data crossing queues (and threads), GET_VRING_BASE from a thread,
 * reconnect, memory-table changes under running rings, tag exhaustion, file and null disks,
 * shutdown with I/O in flight, and every fd released.
 */
import fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { VhostUserBlkClient } from '../../src/frontend/index.js'
import * as native from '../../src/native/index.js'
import { VIRTIO_BLK_S_OK, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP } from '../../src/blk/spec.js'
import {
  FLAG_NEED_REPLY, FrontendReq, VERSION, decodeU64, encodeSingleMemRegion, encodeVringFd, encodeVringState,
} from '../../src/vhost/messages.js'
import { connectClient, pattern, withClient } from '../helpers/frontend.js'
import { CLI, problems, startServer, waitFor, type ServerProcess } from '../helpers/server.js'

const MiB = 1 << 20
const THREADS = ['--num-queues', '4', '--io-threads', '2']

/** Starts a server on 2 I/O threads and waits until both are ready (their fds are part of the baseline). */
async function threadedServer(args: string[]): Promise<ServerProcess> {
  const server = await startServer([...THREADS, ...args])
  await waitFor(() => server.logLines().filter((l) => l.msg === 'I/O thread ready').length === 2, 10_000, 'both I/O threads')
  return server
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b))
}

/** Sends a memory-slot request with REPLY_ACK and returns the backend's status (0 = done). */
async function memSlot(c: VhostUserBlkClient, request: number, region: { gpa: number; size: number; uva: number; mmapOffset: number }, fd?: number): Promise<bigint> {
  const reply = await c.request(request, encodeSingleMemRegion(region), { flags: VERSION | FLAG_NEED_REPLY, fds: fd === undefined ? [] : [fd] })
  return decodeU64(reply!.payload)
}

describe('a memory disk on 2 I/O threads, 4 queues', () => {
  let server: ServerProcess
  let baselineFds = 0

  beforeAll(async () => {
    server = await threadedServer(['--memory', '64M', '--serial', 'iot-serial', '--log-level', 'debug'])
    baselineFds = server.fdCount()
  })

  afterAll(async () => {
    await server?.stop()
  })

  it('serves every request type on every queue, each ring on the thread of its hardware queue', async () => {
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      for (let q = 0; q < 4; q++) {
        const base = 1000 + q * 512
        const data = pattern(64 * 1024, q)
        expect(await c.write(q, base, data)).toBe(VIRTIO_BLK_S_OK)
        expect(same((await c.read(q, base, data.length)).data, data)).toBe(true)
        expect(await c.flush(q)).toBe(VIRTIO_BLK_S_OK)
        expect(await c.getId(q)).toEqual({ status: VIRTIO_BLK_S_OK, id: 'iot-serial' })
        expect(await c.discard(q, [{ sector: base, sectors: 8 }, { sector: base + 16, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
        expect(await c.writeZeroes(q, [{ sector: base + 32, sectors: 16, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }])).toBe(VIRTIO_BLK_S_OK)
        const expected = Buffer.from(data.subarray(0, 64 * 512))
        expected.fill(0, 0, 8 * 512)
        expected.fill(0, 16 * 512, 24 * 512)
        expected.fill(0, 32 * 512, 48 * 512)
        expect(same((await c.read(q, base, 64 * 512)).data, expected)).toBe(true)
      }
    })
    // Hardware queue h runs on thread h mod 2, as the h div 2-th queue of that thread's tag set
    // (records come from the threads: wait for them).
    const placement = (): Array<Array<[unknown, unknown]>> => [0, 1, 2, 3].map((vring) => server.logLines()
      .filter((l) => l.msg === 'ring served on this I/O thread' && l.vring === vring).map((l) => [l.ioThread, l.hwq]))
    await waitFor(() => placement().every((p) => p.length > 0), 3000, 'the threads to report their rings')
    expect(placement()).toEqual([[[0, 0]], [[1, 0]], [[0, 1]], [[1, 1]]])
  })

  it('reads on every queue what the others wrote, with requests in flight on all of them at once', async () => {
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      const sector = (q: number, i: number): number => 20000 + (q * 16 + i) * 64
      await Promise.all([0, 1, 2, 3].map(async (q) => {
        const writes = Array.from({ length: 16 }, (_, i) => c.write(q, sector(q, i), pattern(32 * 1024, q * 100 + i)))
        expect(await Promise.all(writes)).toEqual(Array(16).fill(VIRTIO_BLK_S_OK))
      }))
      await Promise.all([0, 1, 2, 3].map(async (q) => {
        const from = (q + 1) % 4
        const reads = await Promise.all(Array.from({ length: 16 }, (_, i) => c.read(q, sector(from, i), 32 * 1024)))
        reads.forEach((r, i) => expect(same(r.data, pattern(32 * 1024, from * 100 + i))).toBe(true))
      }))
    })
  })

  it('GET_VRING_BASE stops a ring on its thread and reports the thread\'s next avail index', async () => {
    const c = await connectClient(server.socketPath, { numQueues: 4 })
    try {
      for (let i = 0; i < 5; i++) await c.flush(1)
      for (let i = 0; i < 3; i++) await c.flush(2)
      expect(await c.getVringBase(1)).toBe(5)
      expect(await c.getVringBase(2)).toBe(3)
      expect(await c.getVringBase(3)).toBe(0)
      // The other rings keep running.
      expect(await c.write(0, 0, pattern(4096, 9))).toBe(VIRTIO_BLK_S_OK)
    } finally {
      await c.close()
    }
  })

  it('SET_VRING_ENABLE 0 with I/O in flight, then 1: chains wait in the ring and are served from where the thread stopped', async () => {
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      const enable = async (index: number, on: boolean): Promise<void> => {
        const reply = await c.request(FrontendReq.SET_VRING_ENABLE, encodeVringState({ index, num: on ? 1 : 0 }), { flags: VERSION | FLAG_NEED_REPLY })
        expect(decodeU64(reply!.payload)).toBe(0n)
      }
      const first = Array.from({ length: 8 }, (_, i) => c.write(1, 100000 + i * 64, pattern(32 * 1024, 500 + i)))
      await enable(1, false)
      expect(await Promise.all(first)).toEqual(Array(8).fill(VIRTIO_BLK_S_OK))
      let held = 0
      const waiting = Array.from({ length: 8 }, (_, i) => c.write(1, 110000 + i * 64, pattern(32 * 1024, 600 + i)).then((st) => {
        held++
        return st
      }))
      await new Promise((r) => setTimeout(r, 50))
      expect(held).toBe(0)
      await enable(1, true)
      expect(await Promise.all(waiting)).toEqual(Array(8).fill(VIRTIO_BLK_S_OK))
      const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => c.read(3, 110000 + i * 64, 32 * 1024)))
      reads.forEach((r, i) => expect(same(r.data, pattern(32 * 1024, 600 + i))).toBe(true))
      // The thread that took over went on from where the first one stopped: 16 chains in all.
      expect(await c.getVringBase(1)).toBe(16)
    })
  })

  it('a new frontend sees what the previous one wrote (reconnect)', async () => {
    const data = pattern(128 * 1024, 77)
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => expect(await c.write(3, 60000, data)).toBe(VIRTIO_BLK_S_OK))
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      expect(same((await c.read(0, 60000, data.length)).data, data)).toBe(true)
    })
  })

  it('memory table changes under running rings (ADD_MEM_REG, REM_MEM_REG) with I/O in flight', async () => {
    const served = (): Array<Record<string, unknown>> => server.logLines().filter((l) => l.msg === 'ring served on this I/O thread')
    const lastTable = Math.max(0, ...served().map((l) => l.memory as number))
    await withClient(server.socketPath, { numQueues: 4, memSlots: true, regions: 2, memorySize: 24 * MiB }, async (c) => {
      const extra = { gpa: 2 ** 40, size: 2 * MiB, uva: 0x7e00_0000_0000, mmapOffset: 0 }
      const fd = native.memfdCreate('extra-region', extra.size)
      try {
        const before = [0, 1, 2, 3].map((q) => c.write(q, 70000 + q * 256, pattern(64 * 1024, 300 + q)))
        expect(await memSlot(c, FrontendReq.ADD_MEM_REG, extra, fd)).toBe(0n)
        expect(await Promise.all(before)).toEqual(Array(4).fill(VIRTIO_BLK_S_OK))
        const during = [0, 1, 2, 3].map((q) => c.read((q + 2) % 4, 70000 + q * 256, 64 * 1024))
        expect(await memSlot(c, FrontendReq.REM_MEM_REG, extra)).toBe(0n)
        const reads = await Promise.all(during)
        reads.forEach((r, q) => expect(same(r.data, pattern(64 * 1024, 300 + q))).toBe(true))
        expect(await c.write(1, 80000, pattern(4096, 5))).toBe(VIRTIO_BLK_S_OK)
      } finally {
        native.close(fd)
      }
    })
    // Each change stops the 4 rings on their threads and restarts them over the new table: three
    // tables, each served to all 4 rings (records come from the threads, so wait for them).
    const byTable = (): number[][] => {
      const tables = new Map<number, number[]>()
      for (const l of served()) if ((l.memory as number) > lastTable) tables.set(l.memory as number, [...(tables.get(l.memory as number) ?? []), l.vring as number])
      return [...tables.values()].map((v) => v.sort())
    }
    await waitFor(() => byTable().flat().length >= 12, 3000, 'the threads to report the restarted rings')
    expect(byTable()).toEqual([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]])
  })

  it('SET_VRING_KICK and SET_VRING_CALL on running rings: the thread moves to the new eventfds', async () => {
    await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
      // The client's own eventfds, sent again: the server gets new fds for the same eventfds.
      const own = (c as unknown as { queues: Array<{ kickFd: number; callFd: number }> }).queues
      for (const index of [1, 2]) {
        const kick = await c.request(FrontendReq.SET_VRING_KICK, encodeVringFd({ index, noFd: false }), { flags: VERSION | FLAG_NEED_REPLY, fds: [own[index].kickFd] })
        expect(decodeU64(kick!.payload)).toBe(0n)
        const call = await c.request(FrontendReq.SET_VRING_CALL, encodeVringFd({ index, noFd: false }), { flags: VERSION | FLAG_NEED_REPLY, fds: [own[index].callFd] })
        expect(decodeU64(call!.payload)).toBe(0n)
      }
      const data = pattern(16 * 1024, 11)
      expect(await Promise.all([1, 2].map((q) => c.write(q, 90000 + q * 64, data)))).toEqual([VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK])
      expect(same((await c.read(2, 90000 + 64, data.length)).data, data)).toBe(true)
    })
  })

  it('released every fd and logged no problem', async () => {
    await waitFor(() => server.fdCount() === baselineFds, 3000, `server fds back to ${baselineFds}`)
    expect(problems(server)).toEqual([])
  })
})

describe('tags exhausted on I/O threads', () => {
  it('queue depth 2 under 40 requests in flight on each of 4 queues: all complete, nothing lost', async () => {
    const server = await threadedServer(['--memory', '16M', '--queue-depth', '2'])
    try {
      await withClient(server.socketPath, { numQueues: 4, queueSize: 256 }, async (c) => {
        const at = (q: number, i: number): number => (q * 40 + i) * 16
        await Promise.all([0, 1, 2, 3].map(async (q) => {
          const writes = Array.from({ length: 40 }, (_, i) => c.write(q, at(q, i), pattern(8192, q * 1000 + i)))
          expect(await Promise.all(writes)).toEqual(Array(40).fill(VIRTIO_BLK_S_OK))
        }))
        await Promise.all([0, 1, 2, 3].map(async (q) => {
          const reads = await Promise.all(Array.from({ length: 40 }, (_, i) => c.read(q, at(3 - q, i), 8192)))
          reads.forEach((r, i) => expect(same(r.data, pattern(8192, (3 - q) * 1000 + i))).toBe(true))
        }))
      })
      expect(problems(server)).toEqual([])
    } finally {
      await server.stop()
    }
  })
})

describe('other disks on I/O threads', () => {
  it('a file disk: the threads share the image, each with its own engine', async () => {
    const dir = fs.mkdtempSync('/tmp/vub-iot-')
    const image = `${dir}/disk.img`
    try {
      const server = await threadedServer(['--file', image, '--size', '32M'])
      try {
        const baseline = server.fdCount()
        await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
          for (let q = 0; q < 4; q++) {
            const data = pattern(64 * 1024, 40 + q)
            expect(await c.write(q, 4096 + q * 128, data)).toBe(VIRTIO_BLK_S_OK)
            expect(same((await c.read((q + 1) % 4, 4096 + q * 128, data.length)).data, data)).toBe(true)
            expect(await c.flush(q)).toBe(VIRTIO_BLK_S_OK)
            expect(await c.writeZeroes(q, [{ sector: 4096 + q * 128, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
            expect(same((await c.read(q, 4096 + q * 128, 4096)).data, new Uint8Array(4096))).toBe(true)
          }
        })
        const onDisk = fs.readFileSync(image).subarray((4096 + 128) * 512 + 4096, (4096 + 128) * 512 + 64 * 1024)
        expect(same(onDisk, pattern(64 * 1024, 41).subarray(4096))).toBe(true)
        await waitFor(() => server.fdCount() === baseline, 3000, `server fds back to ${baseline}`)
        expect(problems(server)).toEqual([])
      } finally {
        await server.stop()
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a null disk', async () => {
    const server = await threadedServer(['--null', '1G'])
    try {
      await withClient(server.socketPath, { numQueues: 4 }, async (c) => {
        const statuses = await Promise.all([0, 1, 2, 3].flatMap((q) => [c.write(q, q * 8, pattern(4096, q)), c.flush(q)]))
        expect(statuses).toEqual(Array(8).fill(VIRTIO_BLK_S_OK))
        expect((await c.read(3, 0, 4096)).status).toBe(VIRTIO_BLK_S_OK)
      })
      expect(problems(server)).toEqual([])
    } finally {
      await server.stop()
    }
  })
})

describe('I/O thread options and shutdown', () => {
  it('SIGTERM with I/O in flight on every queue: exits 0', async () => {
    const server = await threadedServer(['--memory', '64M'])
    const c = await connectClient(server.socketPath, { numQueues: 4 })
    try {
      const inFlight = [0, 1, 2, 3].flatMap((q) => Array.from({ length: 24 }, (_, i) => c.write(q, (q * 24 + i) * 128, pattern(64 * 1024, i)).catch(() => -1)))
      expect(await server.stop('SIGTERM')).toBe(0)
      const statuses = await Promise.all(inFlight)
      expect(statuses.every((s) => s === VIRTIO_BLK_S_OK || s === -1)).toBe(true)
    } finally {
      await c.close()
    }
  })

  it('more threads than hardware queues: one thread per hardware queue, with a warning', async () => {
    const server = await startServer(['--memory', '8M', '--num-queues', '2', '--io-threads', '8'])
    try {
      await waitFor(() => server.logLines().filter((l) => l.msg === 'I/O thread ready').length === 2, 10_000, 'two I/O threads')
      expect(server.logLines().find((l) => l.msg === 'serving')?.ioThreads).toBe(2)
      expect(problems(server).map((l) => l.ioThreads)).toEqual([8])
      await withClient(server.socketPath, { numQueues: 2 }, async (c) => expect(await c.write(1, 0, pattern(4096, 1))).toBe(VIRTIO_BLK_S_OK))
    } finally {
      await server.stop()
    }
  })

  it.each([['65'], ['-1'], ['1.5']])('--io-threads %s exits 2 with one clear line', (n) => {
    const r = spawnSync(process.execPath, [CLI, '--socket-path', '/tmp/never.sock', '--io-threads', n], { encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/--io-threads/)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })
})
