/**
 * I/O threads, main-thread side: `IoThreads` runs one worker per I/O thread and hands each ring
 * to the thread that serves its hardware queue (hwq mod threads); `RemoteQueue` is the ring's
 * DeviceQueue here, a proxy that only speaks the control protocol (io-thread-protocol.ts).
 *
 * What stays here: the vhost-user socket and protocol, config space and the write-cache mode
 * (the threads read its shared cell), and the log (threads send their records over the port).
 * What moves to the thread: the ring, its kick and call eventfds, the guest-memory mapping, the
 * hardware queue with its tags and the driver instance. Nothing is shared between threads but
 * the disk's own storage, so no lock is taken anywhere.
 *
 * Stop: `stop()` resolves when the thread answered `stopped`, after every chain it took was
 * completed and published; the main thread's `vq` then holds the thread's nextAvail/nextUsed,
 * which the engine reports (GET_VRING_BASE) and restarts from.
 *
 * Failure: a worker that dies (an exception escaped it) is logged with its error, every ring it
 * served is lost (its stop resolves at once, its connection is closed through `RingStart.fail`)
 * and a fresh worker takes its place for later rings. A worker that dies before it ever became
 * ready is not restarted (it would die again): rings mapped to it fail their connection at once.
 */
import type { Logger } from 'pino'
import type { DeviceQueue, RingStart } from '../vhost/device.js'
import type { GuestMemory } from '../virtqueue/index.js'
import { BlkError } from './errors.js'
import { localHwq, threadOfHwq, type FromIoThread, type ToIoThread } from './io-thread-protocol.js'

/** The part of a `node:worker_threads` Worker used here. */
export interface IoThreadWorker {
  postMessage(message: ToIoThread): void
  on(event: 'message', listener: (message: FromIoThread) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  on(event: 'exit', listener: (exitCode: number) => void): this
  terminate(): Promise<number>
}

/** How to run the I/O threads. */
export interface IoThreadsOptions {
  /** Number of threads, ≥ 1. */
  count: number
  /** Starts the worker of thread `index` (the caller knows its entry point and what it builds). */
  spawn: (index: number) => IoThreadWorker
  log: Logger
}

/** The I/O threads of one device. */
export class IoThreads {
  /** Number of threads. */
  readonly count: number
  private readonly threads: IoThread[]
  private nextQueueId = 1
  private nextMemoryId = 1
  /** One id per memory table: a thread maps a table once for all the rings over it. */
  private readonly memoryIds = new WeakMap<GuestMemory, number>()

  constructor(opts: IoThreadsOptions) {
    this.count = opts.count
    this.threads = Array.from({ length: opts.count }, (_, i) => new IoThread(i, opts.spawn, opts.log))
  }

  /** Serves `ring` on the thread of hardware queue `hwq` (an index of the main TagSet). */
  startQueue(ring: RingStart, hwq: number): DeviceQueue {
    let memory = this.memoryIds.get(ring.mem)
    if (memory === undefined) {
      memory = this.nextMemoryId++
      this.memoryIds.set(ring.mem, memory)
    }
    const thread = this.threads[threadOfHwq(hwq, this.count)]
    return thread.start(ring, localHwq(hwq, this.count), memory, this.nextQueueId++)
  }

  /** Stops every thread. Every queue must have stopped first (the server closed). */
  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()))
  }
}

/** One I/O thread: its worker, and the queues it serves. */
class IoThread {
  private worker: IoThreadWorker
  private ready = false
  private closing = false
  /** Set when the worker died before it was ready: it is not restarted. */
  private down: BlkError | null = null
  private readonly queues = new Map<number, RemoteQueue>()
  private readonly log: Logger

  constructor(
    readonly index: number,
    private readonly spawn: (index: number) => IoThreadWorker,
    log: Logger,
  ) {
    this.log = log.child({ ioThread: index })
    this.worker = this.launch()
  }

  start(ring: RingStart, hwq: number, memory: number, id: number): RemoteQueue {
    const queue = new RemoteQueue(this, id, ring)
    if (this.down !== null) {
      queue.lose(this.down)
      return queue
    }
    this.queues.set(id, queue)
    const regions = ring.mem.regions.map((spec, i) => ({ spec, fd: ring.regionFds[i] }))
    this.post({
      type: 'start', queue: id, vring: ring.index, hwq, memory, regions, layout: { ...ring.layout },
      nextAvail: ring.vq.nextAvail, nextUsed: ring.vq.nextUsed, kickFd: ring.kickFd, callFd: ring.callFd,
    })
    return queue
  }

  post(message: ToIoThread): void {
    this.worker.postMessage(message)
  }

  close(): Promise<number> {
    this.closing = true
    return this.worker.terminate()
  }

  private launch(): IoThreadWorker {
    const worker = this.spawn(this.index)
    worker.on('message', (message) => this.onMessage(message))
    worker.on('error', (err) => this.log.error({ err }, 'I/O thread failed'))
    worker.on('exit', (code) => this.onExit(worker, code))
    return worker
  }

  private onMessage(message: FromIoThread): void {
    switch (message.type) {
      case 'ready':
        this.ready = true
        this.log.info('I/O thread ready')
        return
      case 'log':
        this.log[message.level](message.fields, message.msg)
        return
      case 'eventfds-done':
        this.queues.get(message.queue)?.eventfdsDone()
        return
      case 'stopped': {
        const queue = this.queues.get(message.queue)
        this.queues.delete(message.queue)
        queue?.stopped(message.nextAvail, message.nextUsed)
        return
      }
      case 'failed': {
        const queue = this.queues.get(message.queue)
        this.queues.delete(message.queue)
        queue?.lose(new BlkError('EBLK_QUEUE_START', `I/O thread ${this.index} could not start vring ${queue.vring}: ${message.code} ${message.message}`))
        return
      }
    }
  }

  private onExit(worker: IoThreadWorker, code: number): void {
    if (worker !== this.worker || this.closing) return
    const lost = [...this.queues.values()]
    this.queues.clear()
    const reason = new BlkError('EBLK_IO_THREAD_EXITED', `I/O thread ${this.index} exited with code ${code}`)
    if (!this.ready) {
      this.down = new BlkError('EBLK_IO_THREAD_DOWN', `I/O thread ${this.index} exited with code ${code} before it was ready`)
      this.log.fatal({ code }, 'I/O thread exited before it was ready: the queues mapped to it cannot be served')
    } else {
      this.log.error({ code, queues: lost.length }, 'I/O thread exited: its queues are lost, a new thread takes its place')
      this.ready = false
      this.worker = this.launch()
    }
    for (const queue of lost) queue.lose(reason)
  }
}

/** A ring served by an I/O thread, as the engine sees it. */
class RemoteQueue implements DeviceQueue {
  private stopping: Promise<void> | null = null
  private settleStop: (() => void) | null = null
  /** Resolvers of eventfd replacements not yet answered, oldest first. */
  private replacing: Array<() => void> = []
  /** The thread let go of the ring and its fds (stopped, or lost). */
  private done = false
  private lost = false

  constructor(
    private readonly thread: IoThread,
    private readonly id: number,
    private readonly ring: RingStart,
  ) {}

  /** Virtqueue index. */
  get vring(): number {
    return this.ring.index
  }

  kick(): void {
    if (!this.lost) this.thread.post({ type: 'kick', queue: this.id })
  }

  stop(): Promise<void> {
    if (this.stopping === null) {
      this.stopping = new Promise((resolve) => {
        this.settleStop = resolve
      })
      if (this.done) this.settleStop?.()
      else this.thread.post({ type: 'stop', queue: this.id })
    }
    return this.stopping
  }

  replaceEventfds(kickFd: number, callFd: number): Promise<void> {
    if (this.done) return Promise.resolve()
    this.thread.post({ type: 'eventfds', queue: this.id, kickFd, callFd })
    return new Promise((resolve) => this.replacing.push(resolve))
  }

  /** The thread answered the oldest eventfd replacement. */
  eventfdsDone(): void {
    this.replacing.shift()?.()
  }

  /** The thread stopped the ring; indices are -1 when it never started. */
  stopped(nextAvail: number, nextUsed: number): void {
    if (nextAvail >= 0) {
      this.ring.vq.nextAvail = nextAvail
      this.ring.vq.nextUsed = nextUsed
    }
    this.release()
  }

  /** The thread cannot serve the ring: settle what waits on it, and have the engine close the connection. */
  lose(reason: BlkError): void {
    if (this.lost) return
    this.lost = true
    this.release()
    // Not from inside startQueue or a message handler of the engine: the connection closes next turn.
    setImmediate(() => this.ring.fail(reason))
  }

  /** The thread holds none of the ring's fds any more: every replacement and the stop are settled. */
  private release(): void {
    this.done = true
    for (const resolve of this.replacing) resolve()
    this.replacing = []
    this.settleStop?.()
  }
}
