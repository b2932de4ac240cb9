/**
 * Real QEMU guests on our server with its hardware queues on I/O threads (`--io-threads 2`,
 * `--num-queues 4`: queues 0 and 2 on one thread, 1 and 3 on the other): a 4-job fio verify over
 * 4 hardware queues, and a filesystem, on a memory disk and on a file. After every guest the
 * server's log must hold no warning or error.
 *
 * Skipped (with a printed reason) where QEMU is not installed, except under CI=true.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CLI, logProblems, parseLogLines } from '../helpers/server.js'
import { ensureAssets, qemuAvailable, runContext, runGuest, type GuestRun } from '../helpers/vm.js'

const mustRun = process.env.CI === 'true'
const skip = !qemuAvailable() && !mustRun
if (skip) console.warn('test/vm/io-threads.test.ts skipped: qemu-system-x86_64 is not installed')

const GUEST_MS = 150_000
const THREADS = ['--num-queues', '4', '--io-threads', '2']

/** Boots a 4-queue guest on our server started with `args`, runs `scenario`, checks the common ground. */
async function guest(scenario: string, args: string[], kernelArgs?: string): Promise<GuestRun> {
  const run = await runGuest({
    backend: { command: process.execPath, args: [CLI, '--socket-path', '{socket}', '--log-level', 'info', ...THREADS, ...args] },
    scenario,
    timeoutMs: GUEST_MS - 10_000,
    numQueues: 4,
    kernelArgs,
  })
  const context = runContext(run)
  expect(run.status, context).toBe(0)
  const lines = parseLogLines(run.backendLog)
  expect(logProblems(run.backendLog), context).toEqual([])
  expect(lines.filter((l) => l.msg === 'I/O thread ready').map((l) => l.ioThread as number).sort(), context).toEqual([0, 1])
  return run
}

describe.skipIf(skip)('guests on our server with I/O threads', () => {
  beforeAll(async () => {
    if (!qemuAvailable()) throw new Error('CI=true and qemu-system-x86_64 is not installed: the VM tests must run in CI')
    await ensureAssets()
  }, 15 * 60_000)

  it('multi-queue: 4 hardware queues on 2 threads, a 4-job fio verify passes', async () => {
    const run = await guest('mq', ['--memory', '128M'], 'vub.args=queues=4')
    expect(run.results.mq_queues).toBe('4')
    expect(run.results.fio_verify).toBe('ok')
  }, GUEST_MS)

  it('filesystem on a memory disk: mkfs.ext4, files, e2fsck -fn clean, remount, checksums equal', async () => {
    await guest('filesystem', ['--memory', '256M'])
  }, GUEST_MS)

  it('filesystem on a file: each thread runs its own io_uring over the shared image', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-iot-vm-'))
    try {
      await guest('filesystem', ['--file', path.join(dir, 'disk.img'), '--size', '256M'])
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, GUEST_MS)
})
