/**
 * The VM harness end to end against the reference backend, qemu-storage-daemon: a real guest
 * boots with a 64 MiB vhost-user-blk disk on two queues and runs the `smoke` scenario. This checks
 * vm/ and test/helpers/vm.ts independently of our server; the scenario tests for our server reuse
 * both. Skipped (with a printed reason) where QEMU is not installed, except under CI=true.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { commandAvailable, ensureAssets, qemuAvailable, runGuest } from '../helpers/vm.js'

const DISK_BYTES = 64 * 1024 * 1024
const missing = [
  qemuAvailable() ? undefined : 'qemu-system-x86_64',
  commandAvailable('qemu-storage-daemon') ? undefined : 'qemu-storage-daemon',
].filter((name) => name !== undefined)
const skipReason = missing.length > 0 ? `${missing.join(' and ')} not installed` : undefined
const mustRun = process.env.CI === 'true'
if (skipReason !== undefined && !mustRun) {
  console.warn(`test/vm/qsd-smoke.test.ts skipped: ${skipReason}`)
}

describe.skipIf(skipReason !== undefined && !mustRun)('guest on qemu-storage-daemon', () => {
  let dir: string
  let image: string

  beforeAll(async () => {
    if (skipReason !== undefined) throw new Error(`CI=true and ${skipReason}: the VM tests must run in CI`)
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-qsd-'))
    image = path.join(dir, 'disk.img')
    fs.writeFileSync(image, '')
    fs.truncateSync(image, DISK_BYTES)
    await ensureAssets()
  }, 15 * 60_000)

  afterAll(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('smoke: the guest sees 64 MiB on 2 queues and direct writes read back intact', async () => {
    const run = await runGuest({
      backend: {
        command: 'qemu-storage-daemon',
        args: [
          '--blockdev', `driver=file,node-name=f0,filename=${image}`,
          '--export', 'type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path={socket},writable=on,num-queues=2',
        ],
      },
      scenario: 'smoke',
      numQueues: 2,
      timeoutMs: 100_000,
    })
    const context = `console:\n${run.console.split('\n').slice(-40).join('\n')}\nbackend:\n${run.backendLog}`

    expect(run.status, context).toBe(0)
    expect(run.results.size_sectors).toBe(String(DISK_BYTES / 512))
    expect(run.results.size_bytes).toBe(String(DISK_BYTES))
    expect(run.results.mq_queues).toBe('2')
    expect(run.results.ro).toBe('0')
    const writes = Object.keys(run.results).filter((key) => /^dd\d+$/.test(key))
    expect(writes.length).toBeGreaterThanOrEqual(4)
    for (const key of writes) {
      expect(run.results[key], key).toBe('ok')
      expect(run.results[`${key}_written`]).toMatch(/^[0-9a-f]{64}$/)
      expect(run.results[`${key}_read`], key).toBe(run.results[`${key}_written`])
    }
  }, 120_000)
})
