/**
 * Thin helpers around src/frontend for tests: run qemu-storage-daemon (the reference back-end) in
 * a temp dir, connect a VhostUserBlkClient, and always clean up (client closed, daemon killed,
 * temp dir removed), also when the test body throws.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { VhostUserBlkClient, type ClientOptions } from '../../src/frontend/index.js'

/** Path of qemu-storage-daemon, or null when it is not installed. */
export function findQsd(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { encoding: 'utf8' })
  const p = r.stdout.trim()
  return r.status === 0 && p !== '' ? p : null
}

/** How to run qemu-storage-daemon's vhost-user-blk export. */
export interface QsdOptions {
  /** Disk size in bytes (default 64 MiB). */
  size?: number
  /** `num-queues` of the export (default 1). */
  numQueues?: number
  /** `writable` (default true). */
  writable?: boolean
  /** `file`: a raw image in the temp dir (default); `null`: driver=null-co (reads zeros, drops writes). */
  backing?: 'file' | 'null'
  /** `logical-block-size` (default: qsd's 512). */
  logicalBlockSize?: number
}

/** A running qemu-storage-daemon. */
export interface Qsd {
  readonly socketPath: string
  /** The raw image (backing 'file'), else null. */
  readonly imagePath: string | null
  readonly proc: ChildProcess
  /** Everything it printed on stderr so far. */
  stderr(): string
  /** Kills it (SIGTERM, then SIGKILL after 2 s) and removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

/** Starts qemu-storage-daemon exporting one disk over vhost-user-blk and waits for its socket. */
export async function startQsd(opts: QsdOptions = {}): Promise<Qsd> {
  const bin = findQsd()
  if (bin === null) throw new Error('qemu-storage-daemon is not installed')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-qsd-'))
  const socketPath = path.join(dir, 'qsd.sock')
  const size = opts.size ?? 64 << 20
  let blockdev: string
  let imagePath: string | null = null
  if ((opts.backing ?? 'file') === 'file') {
    imagePath = path.join(dir, 'disk.img')
    fs.writeFileSync(imagePath, '')
    fs.truncateSync(imagePath, size)
    blockdev = `driver=file,node-name=disk0,filename=${imagePath},discard=unmap`
  } else {
    blockdev = `driver=null-co,node-name=disk0,size=${size}`
  }
  let exp = `type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=${socketPath}`
  exp += `,writable=${opts.writable === false ? 'off' : 'on'},num-queues=${opts.numQueues ?? 1}`
  if (opts.logicalBlockSize !== undefined) exp += `,logical-block-size=${opts.logicalBlockSize}`
  const proc = spawn(bin, ['--blockdev', blockdev, '--export', exp], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
  let stopped: Promise<void> | null = null
  const qsd: Qsd = {
    socketPath,
    imagePath,
    proc,
    stderr: () => err,
    stop: () => {
      stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
          proc.kill('SIGTERM')
          const timer = setTimeout(() => proc.kill('SIGKILL'), 2000)
          await exited
          clearTimeout(timer)
        }
        fs.rmSync(dir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
  try {
    const deadline = Date.now() + 10_000
    while (!fs.existsSync(socketPath)) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`qemu-storage-daemon exited: ${err}`)
      if (Date.now() > deadline) throw new Error(`qemu-storage-daemon did not create its socket: ${err}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  } catch (e) {
    await qsd.stop()
    throw e
  }
  return qsd
}

/** Runs `fn` with a fresh qemu-storage-daemon, stopping it afterwards whatever happens. */
export async function withQsd<T>(opts: QsdOptions, fn: (qsd: Qsd) => Promise<T>): Promise<T> {
  const qsd = await startQsd(opts)
  try {
    return await fn(qsd)
  } finally {
    await qsd.stop()
  }
}

/** Connects a client (defaults suit tests: 16 MiB of guest RAM). */
export function connectClient(socketPath: string, opts: Partial<ClientOptions> = {}): Promise<VhostUserBlkClient> {
  return VhostUserBlkClient.connect({ memorySize: 16 << 20, ...opts, socketPath })
}

/** Runs `fn` with a connected client, closing it afterwards whatever happens. */
export async function withClient<T>(socketPath: string, opts: Partial<ClientOptions>, fn: (c: VhostUserBlkClient) => Promise<T>): Promise<T> {
  const client = await connectClient(socketPath, opts)
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

/** Open fds of this process (to check that a client releases everything it created). */
export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length
}

/** Deterministic pseudo-random bytes (a test pattern that differs per seed and per byte). */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < len; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}
