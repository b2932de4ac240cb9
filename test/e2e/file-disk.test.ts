/**
 * The real server serving raw images (`--file`), driven through src/frontend: the same suite on a
 * regular file and on a loop device, with each I/O engine, buffered and with O_DIRECT. Every
 * request type; discard frees the image's blocks; write-zeroes; the guest's write-cache bit; the
 * image lock; data flushed is in the image after the server stops. Then `--size`, read-only
 * sharing, option errors, and an image on a small tmpfs that fills up.
 *
 * Loop devices and tmpfs mounts need root: without it those parts are skipped with the reason
 * printed, except under CI=true, where they fail.
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BLK_CONFIG_OFFSETS, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from '../../src/blk/spec.js'
import type { VhostUserBlkClient } from '../../src/frontend/index.js'
import { hasFeature } from '../../src/vhost/messages.js'
import { outHeader } from '../helpers/blk.js'
import { pattern, withClient } from '../helpers/frontend.js'
import { CLI, problems, startServer, waitFor, type ServerProcess } from '../helpers/server.js'
import { expectSame, readFileAt } from '../helpers/bytes.js'

const MiB = 1 << 20
const IMAGE_SIZE = 64 * MiB

function run(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 })
}


/** Runs a root-only probe; null when it worked, else why not. */
function probe(what: string, cmd: string): string | null {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' })
  return r.status === 0 ? null : `${what} is not permitted here: ${(r.stderr || r.error?.message || 'failed').trim()}`
}

/** Whether a privileged part runs: skipped (reason printed) without the privilege, failed under CI=true. */
function privileged(reason: string | null): boolean {
  if (reason === null) return true
  if (process.env.CI === 'true') throw new Error(`${reason} (required under CI=true)`)
  console.warn(`skipped: ${reason}`)
  return false
}

const loopReason = probe('losetup',
  'f=$(mktemp) && truncate -s 1M "$f" && d=$(losetup -f --show "$f") && losetup -d "$d"; s=$?; rm -f "$f"; exit $s')
const straceReason = probe('strace fault injection', 'strace -qq -o /dev/null -e trace=getpid -e inject=getpid:error=EPERM true')
const mountReason = probe('mount -t tmpfs',
  'd=$(mktemp -d) && mount -t tmpfs -o size=1M tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s')

/** What the server serves, and how the test looks at the bytes and blocks behind it. */
interface Backing {
  /** The path given to --file. */
  readonly path: string
  /** The regular file holding the data (the image, or the loop device's backing file). */
  readonly file: string
  cleanup(): void
}

function imageFile(dir: string, size: number): Backing {
  const file = path.join(dir, 'disk.img')
  fs.writeFileSync(file, '')
  fs.truncateSync(file, size)
  return { path: file, file, cleanup: () => {} }
}

function loopDevice(dir: string, size: number): Backing {
  const file = imageFile(dir, size).file
  const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`losetup failed: ${r.stderr}`)
  const dev = r.stdout.trim()
  return { path: dev, file, cleanup: () => void spawnSync('losetup', ['-d', dev]) }
}

interface Config {
  name: string
  backing: 'file' | 'loop'
  engine: 'io_uring' | 'threads' | 'sync'
  direct: boolean
}

const CONFIGS: Config[] = [
  { name: 'a file on io_uring', backing: 'file', engine: 'io_uring', direct: false },
  { name: 'a file on threads', backing: 'file', engine: 'threads', direct: false },
  { name: 'a file with --direct on io_uring', backing: 'file', engine: 'io_uring', direct: true },
  { name: 'a file with --direct on threads', backing: 'file', engine: 'threads', direct: true },
  { name: 'a file on sync', backing: 'file', engine: 'sync', direct: false },
  { name: 'a file with --direct on sync', backing: 'file', engine: 'sync', direct: true },
  { name: 'a loop device on io_uring', backing: 'loop', engine: 'io_uring', direct: false },
  { name: 'a loop device on threads', backing: 'loop', engine: 'threads', direct: false },
  { name: 'a loop device on sync', backing: 'loop', engine: 'sync', direct: false },
]

describe.each(CONFIGS)('serving $name', (cfg) => {
  const enabled = cfg.backing === 'file' || privileged(loopReason)
  let dir: string
  let backing: Backing
  let server: ServerProcess
  let args: string[]

  beforeAll(async () => {
    if (!enabled) return
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-image-'))
    backing = cfg.backing === 'file' ? imageFile(dir, IMAGE_SIZE) : loopDevice(dir, IMAGE_SIZE)
    args = ['--file', backing.path, '--io-engine', cfg.engine, '--num-queues', '2', '--serial', 'file-disk', ...(cfg.direct ? ['--direct'] : [])]
    server = await startServer(args)
  })

  afterAll(async () => {
    if (!enabled) return
    await server?.stop()
    backing?.cleanup()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it.runIf(enabled)('announces the image, its size and the engine', async () => {
    const serving = server.logLines().find((l) => l.msg === 'serving')
    expect(serving).toMatchObject({ ioEngine: cfg.engine, direct: cfg.direct, disk: cfg.backing === 'loop' ? 'block-device' : 'file', size: '64M' })
    await withClient(server.socketPath, {}, async (c) => {
      expect(c.config.capacity).toBe(IMAGE_SIZE / 512)
      expect(hasFeature(c.features, VIRTIO_BLK_F_DISCARD)).toBe(true)
      expect(hasFeature(c.features, VIRTIO_BLK_F_WRITE_ZEROES)).toBe(true)
      expect(hasFeature(c.features, VIRTIO_BLK_F_RO)).toBe(false)
      expect(c.config.discardSectorAlignment).toBe(1)
    })
  })

  it.runIf(enabled)('serves every request type', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      // 2 MiB + 4 KiB: three segments of the frontend's 1 MiB size_max.
      const big = pattern(2 * MiB + 4096, 1)
      expect(await c.write(0, 2048, big)).toBe(VIRTIO_BLK_S_OK)
      const r = await c.read(1, 2048, big.length)
      expect(r.status).toBe(VIRTIO_BLK_S_OK)
      expectSame(r.data, big)
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
      expect(await c.getId(0)).toEqual({ status: VIRTIO_BLK_S_OK, id: 'file-disk' })
      expect(await c.discard(0, [{ sector: 2048, sectors: 8 }, { sector: 2064, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
      expect(await c.writeZeroes(0, [{ sector: 2080, sectors: 16 }, { sector: 2112, sectors: 16, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }]))
        .toBe(VIRTIO_BLK_S_OK)
      const after = await c.read(0, 2048, 64 * 512)
      const expected = Buffer.from(big.subarray(0, 64 * 512))
      expected.fill(0, 0, 8 * 512)
      expected.fill(0, 16 * 512, 24 * 512)
      expected.fill(0, 32 * 512, 48 * 512)
      expected.fill(0, 64 * 512)
      expectSame(after.data, expected)
      // Out of range and unaligned requests fail alone.
      expect((await c.read(0, IMAGE_SIZE / 512, 512)).status).toBe(VIRTIO_BLK_S_IOERR)
      expect(await c.write(0, 0, pattern(4096, 2))).toBe(VIRTIO_BLK_S_OK)
    })
  })

  it.runIf(enabled)('discard frees the image\'s blocks and the range reads back as zeroes', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const sector = 16384
      expect(await c.write(0, sector, pattern(4 * MiB, 3))).toBe(VIRTIO_BLK_S_OK)
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
      const before = fs.statSync(backing.file).blocks
      expect(await c.discard(0, [{ sector, sectors: (4 * MiB) / 512 }])).toBe(VIRTIO_BLK_S_OK)
      expect(fs.statSync(backing.file).blocks).toBeLessThanOrEqual(before - (4 * MiB) / 512)
      expectSame((await c.read(0, sector, 4 * MiB)).data, new Uint8Array(4 * MiB))
    })
  })

  it.runIf(enabled)('write-zeroes zeroes; with UNMAP it frees the blocks too', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const sector = 32768
      expect(await c.write(0, sector, pattern(2 * MiB, 4))).toBe(VIRTIO_BLK_S_OK)
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
      expect(await c.writeZeroes(0, [{ sector, sectors: 2048 }])).toBe(VIRTIO_BLK_S_OK)
      const before = fs.statSync(backing.file).blocks
      expect(await c.writeZeroes(0, [{ sector: sector + 2048, sectors: 2048, flags: VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP }])).toBe(VIRTIO_BLK_S_OK)
      expect(fs.statSync(backing.file).blocks).toBeLessThanOrEqual(before - 2048)
      expectSame((await c.read(0, sector, 2 * MiB)).data, new Uint8Array(2 * MiB))
    })
  })

  it.runIf(enabled)('serves two queues with many requests in flight', async () => {
    await withClient(server.socketPath, { numQueues: 2, queueSize: 256 }, async (c) => {
      const jobs = [0, 1].map(async (q) => {
        const writes = Array.from({ length: 64 }, (_, i) => c.write(q, 40000 + q * 8192 + i * 128, pattern(16384 + i * 512, q * 1000 + i)))
        expect(await Promise.all(writes)).toEqual(Array(64).fill(VIRTIO_BLK_S_OK))
        const reads = await Promise.all(Array.from({ length: 64 }, (_, i) => c.read(q, 40000 + q * 8192 + i * 128, 16384 + i * 512)))
        reads.forEach((r, i) => expectSame(r.data, pattern(16384 + i * 512, q * 1000 + i)))
      })
      await Promise.all(jobs)
    })
  })

  it.runIf(enabled)('follows the guest write-cache bit (writethrough)', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      expect((await c.getConfig(BLK_CONFIG_OFFSETS.wce, 1))[0]).toBe(1)
      await c.setConfig(BLK_CONFIG_OFFSETS.wce, Uint8Array.of(0))
      const data = pattern(64 * 1024, 5)
      expect(await c.write(0, 50000, data)).toBe(VIRTIO_BLK_S_OK)
      expect(await c.writeZeroes(0, [{ sector: 50000, sectors: 8 }])).toBe(VIRTIO_BLK_S_OK)
      const expected = Buffer.from(data)
      expected.fill(0, 0, 4096)
      expectSame(readFileAt(backing.file, 50000 * 512, data.length), expected)
    })
  })

  it.runIf(enabled)('refuses a second server on the same image with a clear message', () => {
    for (const extra of [[], ['--read-only']]) {
      const r = run(['--socket-path', path.join(dir, 'second.sock'), '--file', backing.path, ...extra])
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/is locked by another process/)
    }
  })

  it.runIf(enabled && cfg.direct)('aligned guest buffers go straight to the image, unaligned ones through a bounce buffer', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const data = pattern(3 * 4096, 6)
      const aligned = await rawIo(c, VIRTIO_BLK_T_OUT, 60000, data, 4096)
      expect(aligned.status).toBe(VIRTIO_BLK_S_OK)
      expectSame(readFileAt(backing.file, 60000 * 512, data.length), data)
      const back = await rawIo(c, VIRTIO_BLK_T_IN, 60000, new Uint8Array(data.length), 4096)
      expect(back.status).toBe(VIRTIO_BLK_S_OK)
      expectSame(back.data, data)
      const odd = await rawIo(c, VIRTIO_BLK_T_IN, 60000, new Uint8Array(data.length), 8)
      expect(odd.status).toBe(VIRTIO_BLK_S_OK)
      expectSame(odd.data, data)
    })
  })

  it.runIf(enabled)('data written and flushed is in the image after the server stops, and a new server reads it', async () => {
    const data = pattern(MiB, 7)
    await withClient(server.socketPath, {}, async (c) => {
      expect(await c.write(0, 70000, data)).toBe(VIRTIO_BLK_S_OK)
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
    })
    expect(problems(server)).toEqual([])
    expect(await server.stop()).toBe(0)
    expectSame(readFileAt(backing.file, 70000 * 512, data.length), data)
    server = await startServer(args)
    await withClient(server.socketPath, {}, async (c) => expectSame((await c.read(0, 70000, data.length)).data, data))
  })
})

/**
 * One request with its data in a buffer of guest memory aligned to `align` bytes (8: the
 * frontend's usual packing; 4096: a page, as guests use), placed by hand with submitSegments.
 */
async function rawIo(c: VhostUserBlkClient, type: number, sector: number, data: Uint8Array, align: number):
Promise<{ status: number; data: Uint8Array }> {
  const mem = c.guest.memory
  const header = c.guest.alloc(16, 64)
  const buf = c.guest.alloc(data.length + align, 4096) + align
  const status = c.guest.alloc(1, 64)
  try {
    mem.write(header, outHeader(type, sector))
    mem.write(buf, data)
    mem.write(status, Uint8Array.of(0xff))
    const writable = type === VIRTIO_BLK_T_IN
    await c.submitSegments(0, [{ gpa: header, len: 16, writable: false }, { gpa: buf, len: data.length, writable }, { gpa: status, len: 1, writable: true }])
    const out = new Uint8Array(data.length)
    const st = new Uint8Array(1)
    mem.read(buf, out)
    mem.read(status, st)
    return { status: st[0], data: out }
  } finally {
    c.guest.release(header, 16)
    c.guest.release(buf - align, data.length + align)
    c.guest.release(status, 1)
  }
}

describe('image options', () => {
  let dir: string

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-image-opts-'))
  })

  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('--size creates a missing image sparse, and grows a short one keeping its data', async () => {
    const file = path.join(dir, 'created.img')
    let s = await startServer(['--file', file, '--size', '1G'])
    expect(await s.stop()).toBe(0)
    expect(fs.statSync(file).size).toBe(2 ** 30)
    expect(fs.statSync(file).blocks).toBe(0)
    fs.writeFileSync(file, 'precious data')
    s = await startServer(['--blk-file', file, '--size', '16M'])
    try {
      await withClient(s.socketPath, {}, async (c) => {
        expect(c.config.capacity).toBe((16 * MiB) / 512)
        expect(Buffer.from((await c.read(0, 0, 512)).data.subarray(0, 13)).toString()).toBe('precious data')
      })
    } finally {
      await s.stop()
    }
    expect(fs.statSync(file).size).toBe(16 * MiB)
  })

  it('read-only servers share an image, advertise RO and refuse writes; a writer is refused meanwhile', async () => {
    const file = path.join(dir, 'shared.img')
    fs.writeFileSync(file, Buffer.concat([Buffer.from(pattern(4096, 8)), Buffer.alloc(MiB - 4096)]))
    const a = await startServer(['--file', file, '--read-only'])
    const b = await startServer(['--file', file, '--read-only'])
    try {
      const w = run(['--socket-path', path.join(dir, 'w.sock'), '--file', file])
      expect(w.status).toBe(1)
      expect(w.stderr).toMatch(/is locked by another process/)
      for (const s of [a, b]) {
        await withClient(s.socketPath, {}, async (c) => {
          expect(hasFeature(c.features, VIRTIO_BLK_F_RO)).toBe(true)
          expect(await c.write(0, 0, pattern(512, 9))).toBe(VIRTIO_BLK_S_IOERR)
          expectSame((await c.read(0, 0, 4096)).data, pattern(4096, 8))
        })
      }
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  it.each([
    [['--memory', '1G', '--file', 'x.img'], /--memory and --file are mutually exclusive/],
    [['--size', '1G'], /--size needs --file/],
    [['--direct'], /--direct needs --file/],
    [['--file', 'x.img', '--io-engine', 'aio'], /--io-engine must be one of io_uring, threads/],
    [['--file', 'x.img', '--size', '1000'], /--size must be a non-zero multiple/],
    [['--file', 'x.img', '--size', '1M', '--read-only'], /--size cannot create or grow a --read-only image/],
    [['--cache', 'none'], /--cache must be one of writeback, writethrough/],
  ])('%j exits 2 with one clear line', (args, message) => {
    const r = run(args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('a missing image without --size exits 1 naming it', () => {
    const r = run(['--socket-path', path.join(dir, 'm.sock'), '--file', path.join(dir, 'missing.img')])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/missing\.img: no such file \(give --size to create it\)/)
  })

  it('--print-capabilities lists blk-file', () => {
    expect(JSON.parse(run(['--print-capabilities']).stdout)).toEqual({ type: 'block', features: ['read-only', 'blk-file'] })
  })
})

describe.each(['io_uring', 'threads', 'sync'] as const)('an image on a tmpfs that fills up, on %s', (engine) => {
  const enabled = privileged(mountReason)
  let mnt: string
  let server: ServerProcess

  beforeAll(async () => {
    if (!enabled) return
    mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-full-'))
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4M', 'tmpfs', mnt], { encoding: 'utf8' })
    if (m.status !== 0) throw new Error(`mount failed: ${m.stderr}`)
    server = await startServer(['--file', path.join(mnt, 'disk.img'), '--size', '16M', '--io-engine', engine, '--num-queues', '1'])
  })

  afterAll(async () => {
    if (!enabled) return
    await server?.stop()
    spawnSync('umount', [mnt])
    fs.rmSync(mnt, { recursive: true, force: true })
  })

  it.runIf(enabled)('writes past the free space fail with IOERR, everything else is served, and freed space is used again', async () => {
    await withClient(server.socketPath, {}, async (c) => {
      const chunk = MiB
      const statuses: number[] = []
      for (let i = 0; i < 8; i++) statuses.push(await c.write(0, (i * chunk) / 512, pattern(chunk, 20 + i)))
      const failed = statuses.indexOf(VIRTIO_BLK_S_IOERR)
      expect(failed).toBeGreaterThan(0)
      expect(statuses.slice(0, failed)).toEqual(Array(failed).fill(VIRTIO_BLK_S_OK))
      // The server is up: reads of what was written, flush, get-id and discard all succeed.
      expectSame((await c.read(0, 0, chunk)).data, pattern(chunk, 20))
      expect(await c.flush(0)).toBe(VIRTIO_BLK_S_OK)
      expect((await c.getId(0)).status).toBe(VIRTIO_BLK_S_OK)
      expect(await c.write(0, (12 * chunk) / 512, pattern(chunk, 40))).toBe(VIRTIO_BLK_S_IOERR)
      expect(await c.discard(0, [{ sector: 0, sectors: (2 * chunk) / 512 }])).toBe(VIRTIO_BLK_S_OK)
      expect(await c.write(0, (12 * chunk) / 512, pattern(chunk, 41))).toBe(VIRTIO_BLK_S_OK)
      expectSame((await c.read(0, (12 * chunk) / 512, chunk)).data, pattern(chunk, 41))
    })
    const errors = server.logLines().filter((l) => l.msg === 'I/O error: request failed')
    expect(errors.length).toBeGreaterThan(0)
    expect(errors[0]).toMatchObject({ code: 'ENOSPC', op: 'write', engine })
  })
})

describe('where io_uring is unavailable (io_uring_setup fails, injected with strace)', () => {
  const enabled = privileged(straceReason)
  let dir: string

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-no-uring-'))
  })

  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** The CLI under strace, with every io_uring_setup failing with `errno`. */
  function straced(errno: string, args: string[]) {
    return spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=io_uring_setup', '-e', `inject=io_uring_setup:error=${errno}`,
      process.execPath, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  }

  it.runIf(enabled)('falls back to the threads engine with a logged warning, and serves', async () => {
    const socketPath = path.join(dir, 'fallback.sock')
    const proc = straced('EPERM', ['--socket-path', socketPath, '--file', path.join(dir, 'disk.img'), '--size', '8M'])
    let stderr = ''
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const exited = new Promise((resolve) => proc.on('exit', resolve))
    try {
      await waitFor(() => stderr.includes('"msg":"serving"'), 10_000, 'the server to serve')
      const lines = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(lines.find((l) => l.level === 40)).toMatchObject({ msg: 'io_uring is unavailable: doing file I/O on the libuv thread pool instead' })
      expect(String(lines.find((l) => l.level === 40)?.reason)).toMatch(/^EPERM/)
      expect(lines.find((l) => l.msg === 'serving')).toMatchObject({ ioEngine: 'threads' })
      await withClient(socketPath, {}, async (c) => {
        expect(await c.write(0, 8, pattern(8192, 50))).toBe(VIRTIO_BLK_S_OK)
        expectSame((await c.read(0, 8, 8192)).data, pattern(8192, 50))
      })
    } finally {
      // SIGTERM to the server itself (strace would only detach from it); strace exits with it.
      const pid = /"pid":(\d+)/.exec(stderr)?.[1]
      if (pid !== undefined) process.kill(Number(pid), 'SIGTERM')
      else proc.kill('SIGKILL')
      await exited
    }
  })

  it.runIf(enabled)('--io-engine io_uring then exits 1 saying why', async () => {
    const proc = straced('ENOSYS', ['--socket-path', path.join(dir, 'explicit.sock'), '--file', path.join(dir, 'explicit.img'), '--size', '8M', '--io-engine', 'io_uring'])
    let stderr = ''
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const code = await new Promise((resolve) => proc.on('exit', resolve))
    expect(code).toBe(1)
    expect(stderr).toMatch(/io_uring is unavailable: ENOSYS/)
  })
})
