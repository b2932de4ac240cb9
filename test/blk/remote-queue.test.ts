/**
 * IoThreads (the main-thread side of I/O threads) against fake workers: which thread and which of
 * its hardware queues a ring goes to, one memory id per table, the stop and eventfd handshakes,
 * log records written by the main logger, and failure: a worker that dies loses its rings (their
 * connection is failed, their stop resolves) and is replaced; one that dies before it was ready is
 * not, and later rings on it fail at once. Then the same failures behind a real session in this
 * process, driven by the frontend: the connection closes with the reason logged, the server goes on.
 */
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { BlkDevice } from '../../src/blk/device.js'
import type { FromIoThread, StartMessage, ToIoThread } from '../../src/blk/io-thread-protocol.js'
import { IoThreads, type IoThreadWorker } from '../../src/blk/remote-queue.js'
import { initBlkRequest } from '../../src/blk/request-state.js'
import { NullDisk } from '../../src/disks/null.js'
import { GenDiskBuilder, TagSet } from '../../src/mq/index.js'
import { VhostUserServer } from '../../src/vhost/server.js'
import { connectClient } from '../helpers/frontend.js'
import type { RingStart } from '../../src/vhost/device.js'
import type { GuestMemory, SplitQueue } from '../../src/virtqueue/index.js'

class FakeWorker extends EventEmitter {
  readonly sent: ToIoThread[] = []
  terminated = false
  postMessage(message: ToIoThread): void {
    this.sent.push(structuredClone(message))
  }
  terminate(): Promise<number> {
    this.terminated = true
    return Promise.resolve(0)
  }
  answer(message: FromIoThread): void {
    this.emit('message', message)
  }
  die(err: Error | null, code = 1): void {
    if (err !== null) this.emit('error', err)
    this.emit('exit', code)
  }
}

interface Harness {
  threads: IoThreads
  workers: FakeWorker[]
  logs: Array<Record<string, unknown>>
}

function harness(count: number): Harness {
  const workers: FakeWorker[] = []
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(JSON.parse(String(chunk)) as Record<string, unknown>)
      done()
    },
  })
  const log = pino({ level: 'debug' }, sink)
  const threads = new IoThreads({
    count,
    log,
    spawn: () => {
      const w = new FakeWorker()
      workers.push(w)
      return w as unknown as IoThreadWorker
    },
  })
  return { threads, workers, logs }
}

/** A ring as the engine hands it over; `failures` collects what `fail` was called with. */
function ring(index: number, mem: GuestMemory, failures: Error[] = []): RingStart {
  return {
    index,
    vq: { nextAvail: 7, nextUsed: 5 } as unknown as SplitQueue,
    mem,
    regionFds: [40, 41],
    layout: { size: 64, descGpa: 0x1000, availGpa: 0x2000, usedGpa: 0x3000, eventIdx: true },
    kickFd: 50 + index,
    callFd: 60 + index,
    notify: () => {},
    fail: (reason) => failures.push(reason),
  }
}

const memA = { regions: [{ gpa: 0, size: 4096, uva: 1 << 20, mmapOffset: 0 }, { gpa: 8192, size: 4096, uva: 2 << 20, mmapOffset: 4096 }] } as unknown as GuestMemory
const memB = { regions: [{ gpa: 0, size: 4096, uva: 3 << 20, mmapOffset: 0 }] } as unknown as GuestMemory

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

describe('IoThreads', () => {
  it('sends hardware queue h to thread h mod n as its queue h div n, with one memory id per table', () => {
    const { threads, workers } = harness(2)
    threads.startQueue(ring(0, memA), 3)
    threads.startQueue(ring(1, memA), 2)
    threads.startQueue(ring(2, memB), 1)
    const starts = workers.map((w) => w.sent.filter((m): m is StartMessage => m.type === 'start'))
    expect(starts[1].map((m) => [m.vring, m.hwq])).toEqual([[0, 1], [2, 0]])
    expect(starts[0].map((m) => [m.vring, m.hwq])).toEqual([[1, 1]])
    const [a, b] = starts[1]
    expect(a.memory).toBe(starts[0][0].memory)
    expect(b.memory).not.toBe(a.memory)
    expect(a).toMatchObject({
      regions: [{ spec: memA.regions[0], fd: 40 }, { spec: memA.regions[1], fd: 41 }],
      layout: { size: 64, descGpa: 0x1000, availGpa: 0x2000, usedGpa: 0x3000, eventIdx: true },
      nextAvail: 7, nextUsed: 5, kickFd: 50, callFd: 60,
    })
  })

  it('kick() asks the thread to process the ring; stop() resolves with the thread\'s indices once it answers', async () => {
    const { threads, workers } = harness(1)
    const r = ring(0, memA)
    const queue = threads.startQueue(r, 0)
    queue.kick()
    let stopped = false
    const stopping = queue.stop()!.then(() => (stopped = true))
    const id = (workers[0].sent[0] as StartMessage).queue
    expect(workers[0].sent.slice(1)).toEqual([{ type: 'kick', queue: id }, { type: 'stop', queue: id }])
    await nextTurn()
    expect(stopped).toBe(false)
    workers[0].answer({ type: 'stopped', queue: id, nextAvail: 300, nextUsed: 290 })
    await stopping
    expect([r.vq.nextAvail, r.vq.nextUsed]).toEqual([300, 290])
  })

  it('eventfd replacements resolve in order as the thread answers them', async () => {
    const { threads, workers } = harness(1)
    const queue = threads.startQueue(ring(0, memA), 0)
    const id = (workers[0].sent[0] as StartMessage).queue
    const done: string[] = []
    const first = queue.replaceEventfds!(70, 60).then(() => done.push('kick'))
    const second = queue.replaceEventfds!(70, 71).then(() => done.push('call'))
    expect(workers[0].sent.slice(1)).toEqual([
      { type: 'eventfds', queue: id, kickFd: 70, callFd: 60 },
      { type: 'eventfds', queue: id, kickFd: 70, callFd: 71 },
    ])
    workers[0].answer({ type: 'eventfds-done', queue: id })
    await first
    expect(done).toEqual(['kick'])
    workers[0].answer({ type: 'eventfds-done', queue: id })
    await second
    expect(done).toEqual(['kick', 'call'])
  })

  it('an eventfd replacement while the ring drains is settled by the thread\'s stop; later ones at once', async () => {
    const { threads, workers } = harness(1)
    const queue = threads.startQueue(ring(0, memA), 0)
    const id = (workers[0].sent[0] as StartMessage).queue
    const stopping = queue.stop()
    let replaced = false
    const during = queue.replaceEventfds!(50, 99).then(() => (replaced = true))
    await nextTurn()
    expect(replaced).toBe(false)
    // The thread answered the stop first (the ring had drained): it holds no fd of the ring any more.
    workers[0].answer({ type: 'stopped', queue: id, nextAvail: 1, nextUsed: 1 })
    await Promise.all([stopping, during])
    await queue.replaceEventfds!(50, 98)
    expect(workers[0].sent.map((m) => m.type)).toEqual(['start', 'stop', 'eventfds'])
  })

  it('writes the threads\' log records with the thread index', () => {
    const { workers, logs } = harness(2)
    workers[1].answer({ type: 'ready' })
    workers[1].answer({ type: 'log', level: 'warn', fields: { vring: 3 }, msg: 'from the thread' })
    expect(logs.find((l) => l.msg === 'from the thread')).toMatchObject({ level: 40, ioThread: 1, vring: 3 })
    expect(logs.find((l) => l.msg === 'I/O thread ready')).toMatchObject({ ioThread: 1 })
  })

  it('a ring the thread could not start fails its connection (EBLK_QUEUE_START)', async () => {
    const { threads, workers } = harness(1)
    const failures: Error[] = []
    const queue = threads.startQueue(ring(0, memA, failures), 0)
    workers[0].answer({ type: 'failed', queue: (workers[0].sent[0] as StartMessage).queue, code: 'EVHOST_BAD_REGION', message: 'cannot map' })
    await nextTurn()
    expect(failures.map((e) => (e as Error & { code: string }).code)).toEqual(['EBLK_QUEUE_START'])
    await queue.stop()
    expect(workers[0].sent.filter((m) => m.type === 'stop')).toEqual([])
  })

  it('a thread that dies loses its rings (logged, connection failed, stop resolves) and is replaced', async () => {
    const { threads, workers, logs } = harness(2)
    workers[0].answer({ type: 'ready' })
    const failures: Error[] = []
    const lost = threads.startQueue(ring(0, memA, failures), 0)
    const other = threads.startQueue(ring(1, memA, failures), 1)
    const stopping = lost.stop()
    workers[0].die(new Error('boom in the thread'))
    await stopping
    await nextTurn()
    expect(failures.map((e) => (e as Error & { code: string }).code)).toEqual(['EBLK_IO_THREAD_EXITED'])
    expect(logs.find((l) => l.msg === 'I/O thread failed')).toMatchObject({ ioThread: 0, err: { message: 'boom in the thread' } })
    expect(logs.find((l) => String(l.msg).startsWith('I/O thread exited'))).toMatchObject({ ioThread: 0, level: 50 })
    // Replaced: the next ring of thread 0 goes to the new worker; thread 1 is untouched.
    expect(workers).toHaveLength(3)
    threads.startQueue(ring(2, memA), 2)
    expect(workers[2].sent.map((m) => m.type)).toEqual(['start'])
    expect(workers[1].sent.map((m) => m.type)).toEqual(['start'])
    other.kick()
    expect(workers[1].sent.map((m) => m.type)).toEqual(['start', 'kick'])
  })

  it('a thread that dies before it was ready is not restarted: its rings fail at once (EBLK_IO_THREAD_DOWN)', async () => {
    const { threads, workers, logs } = harness(1)
    workers[0].die(new Error('cannot load'))
    expect(workers).toHaveLength(1)
    expect(logs.find((l) => l.level === 60)).toMatchObject({ ioThread: 0 })
    const failures: Error[] = []
    const queue = threads.startQueue(ring(0, memA, failures), 0)
    await queue.stop()
    await nextTurn()
    expect(failures.map((e) => (e as Error & { code: string }).code)).toEqual(['EBLK_IO_THREAD_DOWN'])
    expect(workers[0].sent).toEqual([])
  })

  it('close() terminates every worker; their exit then is not a failure', async () => {
    const { threads, workers, logs } = harness(2)
    await threads.close()
    expect(workers.map((w) => w.terminated)).toEqual([true, true])
    workers[0].die(null, 0)
    expect(workers).toHaveLength(2)
    expect(logs.filter((l) => (l.level as number) >= 40)).toEqual([])
  })
})

describe('a failing I/O thread behind a real session', () => {
  /** Our server in this process, its device's queues on fake threads that `behave` as told. */
  async function serve(behave: (worker: FakeWorker, message: ToIoThread) => void): Promise<{
    socketPath: string; logs: Array<Record<string, unknown>>; workers: FakeWorker[]; close(): Promise<void>
  }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-iot-unit-'))
    const socketPath = path.join(dir, 's.sock')
    const logs: Array<Record<string, unknown>> = []
    const log = pino({ level: 'info' }, new Writable({
      write(chunk, _enc, done) {
        logs.push(JSON.parse(String(chunk)) as Record<string, unknown>)
        done()
      },
    }))
    const workers: FakeWorker[] = []
    const threads = new IoThreads({
      count: 1,
      log,
      spawn: () => {
        const w = new FakeWorker()
        w.postMessage = (message) => behave(w, message)
        workers.push(w)
        return w as unknown as IoThreadWorker
      },
    })
    const tagSet = new TagSet({ nrHwQueues: 1, queueDepth: 8, ops: new NullDisk(), initRequest: initBlkRequest })
    const disk = new GenDiskBuilder().name('f').capacityBytes(1 << 20).build(tagSet)
    const device = new BlkDevice({ disk, tagSet, numQueues: 1, writeback: true, log, ioThreads: threads })
    const server = VhostUserServer.listen({ socketPath, device, log })
    return {
      socketPath, logs, workers,
      async close() {
        await server.close()
        await threads.close()
        fs.rmSync(dir, { recursive: true, force: true })
      },
    }
  }

  it('a ring the thread cannot start closes the connection with the reason logged; the next frontend is served', async () => {
    let refuse = true
    const s = await serve((w, m) => {
      if (m.type === 'start' && refuse) w.answer({ type: 'failed', queue: m.queue, code: 'EVHOST_BAD_REGION', message: 'cannot map guest memory' })
      if (m.type === 'stop') w.answer({ type: 'stopped', queue: m.queue, nextAvail: -1, nextUsed: -1 })
    })
    try {
      const c = await connectClient(s.socketPath)
      await expect(c.flush(0)).rejects.toMatchObject({ code: 'EFRONTEND_CLOSED' })
      await c.close()
      expect(s.logs.find((l) => l.msg === 'closing connection: the device failed a queue')).toMatchObject({ err: { code: 'EBLK_QUEUE_START' } })
      refuse = false
      const again = await connectClient(s.socketPath)
      await again.close()
    } finally {
      await s.close()
    }
  })

  it('a thread that dies with I/O in flight: logged, the connection closes, the server goes on', async () => {
    const s = await serve((w, m) => {
      // Takes the ring and dies when the guest's first kick arrives, leaving its requests unanswered.
      if (m.type === 'start') w.answer({ type: 'ready' })
      if (m.type === 'kick') setImmediate(() => w.die(new Error('an exception escaped the thread')))
    })
    try {
      const c = await connectClient(s.socketPath)
      await expect(c.flush(0)).rejects.toMatchObject({ code: 'EFRONTEND_CLOSED' })
      await c.close()
      expect(s.logs.find((l) => l.msg === 'I/O thread failed')).toMatchObject({ err: { message: 'an exception escaped the thread' } })
      expect(s.logs.find((l) => l.msg === 'closing connection: the device failed a queue')).toMatchObject({ err: { code: 'EBLK_IO_THREAD_EXITED' } })
      expect(s.workers).toHaveLength(2)
    } finally {
      await s.close()
    }
  })
})
