/**
 * Real QEMU guests (Linux virtio_blk under TCG) against our server: data integrity through direct
 * I/O and the page cache, fio verify, a filesystem, several queues, read-only, serial and size,
 * discard/write-zeroes/fstrim, and a queue depth far below the guest's. After every guest the
 * server's log must hold no warning or error.
 *
 * Skipped (with a printed reason) where QEMU is not installed, except under CI=true.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { CLI, logProblems } from '../helpers/server.js'
import { ensureAssets, qemuAvailable, runContext, runGuest, type GuestRun } from '../helpers/vm.js'

const mustRun = process.env.CI === 'true'
const skip = !qemuAvailable() && !mustRun
if (skip) console.warn('test/vm/server.test.ts skipped: qemu-system-x86_64 is not installed')

const GUEST_MS = 150_000

/** Boots a guest on our server started with `args`, runs `scenario`, and checks the common ground. */
async function guest(scenario: string, args: string[], opts: { numQueues?: number; queueSize?: number; kernelArgs?: string } = {}): Promise<GuestRun> {
  const run = await runGuest({
    backend: { command: process.execPath, args: [CLI, '--socket-path', '{socket}', '--log-level', 'info', ...args] },
    scenario,
    timeoutMs: GUEST_MS - 10_000,
    ...opts,
  })
  const context = runContext(run)
  expect(run.status, context).toBe(0)
  expect(logProblems(run.backendLog), context).toEqual([])
  return run
}

describe.skipIf(skip)('guests on our server', () => {
  beforeAll(async () => {
    if (!qemuAvailable()) throw new Error('CI=true and qemu-system-x86_64 is not installed: the VM tests must run in CI')
    await ensureAssets()
  }, 15 * 60_000)

  it('smoke: size, serial, 2 queues, direct writes read back', async () => {
    const run = await guest('smoke', ['--memory', '256M', '--serial', 'vm-serial-42'], { numQueues: 2 })
    expect(run.results.size_bytes).toBe(String(256 << 20))
    expect(run.results.serial).toBe('vm-serial-42')
    expect(run.results.mq_queues).toBe('2')
    expect(run.results.ro).toBe('0')
  }, GUEST_MS)

  it('integrity: odd sizes and offsets, O_DIRECT and page cache after drop_caches', async () => {
    await guest('integrity', ['--memory', '256M'])
  }, GUEST_MS)

  it('fio verify: randwrite crc32c, 4k-64k, iodepth 16, 2 jobs', async () => {
    const run = await guest('fio-verify', ['--memory', '128M'], { numQueues: 2 })
    expect(run.results.fio_verify).toBe('ok')
  }, GUEST_MS)

  it('filesystem: mkfs.ext4, files, e2fsck -fn clean, remount, checksums equal', async () => {
    await guest('filesystem', ['--memory', '256M'])
  }, GUEST_MS)

  it('multi-queue: num-queues=4 gives 4 hardware queues and a 4-job fio verify passes', async () => {
    const run = await guest('mq', ['--memory', '128M', '--num-queues', '4'], { numQueues: 4, kernelArgs: 'vub.args=queues=4' })
    expect(run.results.mq_queues).toBe('4')
    expect(run.results.fio_verify).toBe('ok')
  }, GUEST_MS)

  it('read-only: ro is 1, writes fail, reads work', async () => {
    const run = await guest('readonly', ['--memory', '64M', '--read-only'])
    expect(run.results.ro).toBe('1')
  }, GUEST_MS)

  it('discard and write-zeroes: blkdiscard, blkdiscard -z, fstrim; zeroed ranges read zero', async () => {
    const run = await guest('discard', ['--memory', '128M'])
    expect(run.results.zeroes).toBe('ok')
    expect(run.results.fstrim).toBe('ok')
  }, GUEST_MS)

  it('small queue depth: --queue-depth 4 under iodepth 32 completes with verify', async () => {
    const run = await guest('fio-verify', ['--memory', '128M', '--queue-depth', '4'], { kernelArgs: 'vub.args=iodepth=32,jobs=2,size_mib=8' })
    expect(run.results.fio_verify).toBe('ok')
  }, GUEST_MS)
})
