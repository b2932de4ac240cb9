/**
 * Real QEMU guests on a file-backed disk: integrity, fio verify, a filesystem (also on tmpfs, where
 * the sync engine serves it), discard (fstrim in the guest must shrink the image's allocated
 * size), persistence across a server and guest restart, and a server restart under a live guest
 * (QEMU reconnect=1).
 *
 * Skipped (with a printed reason) where QEMU is not installed, except under CI=true.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CLI, logProblems, startServer, type ServerProcess } from '../helpers/server.js'
import { ensureAssets, qemuAvailable, runContext, runGuest, type GuestRun } from '../helpers/vm.js'

const mustRun = process.env.CI === 'true'
const skip = !qemuAvailable() && !mustRun
if (skip) console.warn('test/vm/file-disk.test.ts skipped: qemu-system-x86_64 is not installed')

const GUEST_MS = 150_000
const MiB = 1 << 20

let dirs: string[] = []
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  dirs = []
})

/** A fresh sparse image of `bytes` in its own temp dir (under `parent`, by default the system's). */
function image(bytes: number, parent = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(parent, 'vub-vmfile-'))
  dirs.push(dir)
  const file = path.join(dir, 'disk.img')
  fs.writeFileSync(file, '')
  fs.truncateSync(file, bytes)
  return file
}

/** Boots a guest on our server serving `file` (plus `args`) and checks the common ground. */
async function guest(scenario: string, file: string, args: string[] = [], numQueues = 1): Promise<GuestRun> {
  const run = await runGuest({
    backend: { command: process.execPath, args: [CLI, '--socket-path', '{socket}', '--file', file, ...args] },
    scenario,
    numQueues,
    timeoutMs: GUEST_MS - 10_000,
  })
  expect(run.status, runContext(run)).toBe(0)
  expect(logProblems(run.backendLog), runContext(run)).toEqual([])
  return run
}

describe.skipIf(skip)('guests on a file disk', () => {
  beforeAll(async () => {
    if (!qemuAvailable()) throw new Error('CI=true and qemu-system-x86_64 is not installed: the VM tests must run in CI')
    await ensureAssets()
  }, 15 * 60_000)

  it('integrity through direct I/O and the page cache', async () => {
    await guest('integrity', image(256 * MiB))
  }, GUEST_MS)

  it('fio verify on 2 queues', async () => {
    const run = await guest('fio-verify', image(128 * MiB), [], 2)
    expect(run.results.fio_verify).toBe('ok')
  }, GUEST_MS)

  it('filesystem: mkfs, files, fsck clean, remount, checksums equal', async () => {
    await guest('filesystem', image(256 * MiB))
  }, GUEST_MS)

  it('an image on tmpfs is served by the sync engine: filesystem and fsck', async () => {
    const run = await guest('filesystem', image(256 * MiB, '/dev/shm'))
    expect(run.backendLog).toContain('"ioEngine":"sync"')
  }, GUEST_MS)

  it('discard: zeroed ranges read zero, and fstrim in the guest shrinks the image', async () => {
    const file = image(128 * MiB)
    const run = await guest('discard', file)
    expect(run.results.zeroes).toBe('ok')
    expect(run.results.fstrim).toBe('ok')
    // The scenario discards the whole disk, then makes an ext4 (about 4.5 MiB of metadata here),
    // writes and deletes 8 MiB of files and runs fstrim. Had fstrim not punched holes in the
    // image, those 8 MiB would still be allocated on top of the metadata.
    expect(Number(run.results.fstrim_bytes)).toBeGreaterThan(8 * MiB)
    expect(fs.statSync(file).blocks * 512).toBeLessThan(8 * MiB)
  }, GUEST_MS)

  it('persistence: files written through one server and guest are intact for the next', async () => {
    const file = image(128 * MiB)
    const first = await guest('persist-write', file)
    expect(Number(first.results.files)).toBeGreaterThan(0)
    const second = await guest('persist-check', file)
    expect(second.results.files_intact).toBe('ok')
    expect(second.results.files).toBe(first.results.files)
  }, 2 * GUEST_MS)

  it('host storage full: guest writes that need space fail with EIO, the rest keeps working', async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-vmfull-'))
    dirs.push(mnt)
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16M', 'tmpfs', mnt])
    if (mounted.status !== 0) {
      if (mustRun) throw new Error(`CI=true and tmpfs cannot be mounted: ${mounted.stderr}`)
      console.warn(`skipped: cannot mount a tmpfs (${String(mounted.stderr).trim()})`)
      return
    }
    try {
      const file = path.join(mnt, 'disk.img')
      fs.writeFileSync(file, '')
      fs.truncateSync(file, 64 * MiB)
      const run = await runGuest({
        backend: { command: process.execPath, args: [CLI, '--socket-path', '{socket}', '--file', file] },
        scenario: 'nospace',
        timeoutMs: GUEST_MS - 10_000,
      })
      expect(run.status, runContext(run)).toBe(0)
      expect(run.results.overflow_rejected).toBe('ok')
      expect(run.backendLog).toMatch(/ENOSPC/)
    } finally {
      spawnSync('umount', [mnt])
    }
  }, GUEST_MS)

  it('reconnect: the server restarts under a live guest, which then reads what it wrote', async () => {
    const file = image(64 * MiB)
    const dir = path.dirname(file)
    const socketPath = path.join(dir, 'vub.sock')
    const serverArgs = ['--file', file, '--num-queues', '1']
    let server: ServerProcess = await startServer(serverArgs, { socketPath })
    const servers: ServerProcess[] = [server]
    let restart: Promise<void> | null = null
    try {
      const run = await runGuest({
        backend: { socketPath },
        scenario: 'reconnect',
        reconnect: true,
        kernelArgs: 'vub.args=wait=8',
        timeoutMs: GUEST_MS - 10_000,
        onConsole: (text) => {
          if (restart !== null || !text.includes('VUB-RESULT phase=written')) return
          restart = (async () => {
            expect(await server.stop('SIGTERM')).toBe(0)
            server = await startServer(serverArgs, { socketPath })
            servers.push(server)
          })()
        },
      })
      await restart
      expect(restart, 'the guest never reached phase=written').not.toBeNull()
      expect(run.status, runContext(run)).toBe(0)
      expect(run.results.read_after_restart).toBe('ok')
      expect(run.results.write_after_restart).toBe('ok')
      for (const s of servers) expect(logProblems(s.log())).toEqual([])
    } finally {
      await server.stop('SIGKILL')
    }
  }, GUEST_MS)
})
