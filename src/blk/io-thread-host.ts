/**
 * I/O threads, thread side: serves the rings the main thread hands over (io-thread-protocol.ts)
 * on this thread's own hardware queues, with the same BlkQueue hot loop as the main thread.
 *
 * Owns, per ring: a SplitQueue over this thread's own mapping of guest memory, built from the
 * indices handed over; the kick eventfd's Poller (the main thread does not poll it meanwhile); the
 * call eventfd writes. Per memory table: one mapping of the region fds, shared by the rings over
 * it and unmapped when the last of them stops, before `stopped` is answered (so the main thread may
 * close the region fds then). Does not own the TagSet, GenDisk or driver (the thread's entry point
 * builds them) nor anything of the vhost-user protocol.
 *
 * Failure: a ring that cannot start (mapping, ring views, poller) is answered `failed` and serves
 * nothing. Anything thrown while serving escapes to the worker and ends it: the main thread logs the
 * error and closes the connection, which is safer than going on with a queue in an unknown state.
 */
import type { GenDisk, TagSet } from '../mq/index.js'
import { mapRegions, unmapWindow } from '../vhost/memory-table.js'
import { RingEventfds } from '../vhost/ring-eventfds.js'
import { SplitQueue, type GuestMemory } from '../virtqueue/index.js'
import type { FromIoThread, IoThreadLogLevel, RegionFd, StartMessage, ToIoThread } from './io-thread-protocol.js'
import { QueueSet, type BlkQueue } from './queue.js'

/** The part of a `node:worker_threads` MessagePort (the thread's `parentPort`) used here. */
export interface IoThreadPort {
  postMessage(message: FromIoThread): void
  on(event: 'message', listener: (message: ToIoThread) => void): this
}

/** A logger whose records the main thread writes (pino's calling convention: fields, message). */
export class IoThreadLog {
  constructor(private readonly port: IoThreadPort) {}

  error(fields: object, msg: string): void {
    this.write('error', fields, msg)
  }

  warn(fields: object, msg: string): void {
    this.write('warn', fields, msg)
  }

  info(fields: object, msg: string): void {
    this.write('info', fields, msg)
  }

  debug(fields: object, msg: string): void {
    this.write('debug', fields, msg)
  }

  private write(level: IoThreadLogLevel, fields: object, msg: string): void {
    this.port.postMessage({ type: 'log', level, fields: { ...fields }, msg })
  }
}

/** What a thread serves rings with. */
export interface IoThreadHostOptions {
  /** The main thread's messages arrive here; answers and log records go back through it. */
  port: IoThreadPort
  /** This thread's hardware queues (only the ones it serves, indexed as the protocol's `hwq`). */
  tagSet: TagSet
  /** The disk, as the main thread's (same geometry), over `tagSet`. */
  disk: GenDisk
  log: IoThreadLog
  /** Longest adaptive polling window in µs (0: never poll). */
  pollUs: number
}

/** One ring served on this thread. */
class ThreadRing {
  /** Set right after construction (the queue needs `eventfds.notify`). */
  queue: BlkQueue | null = null
  readonly eventfds = new RingEventfds(() => this.queue?.kick())
  /** Stop received: the kick fd is no longer watched; completions still signal the call fd. */
  stopping = false

  constructor(readonly vq: SplitQueue, readonly memory: number, kickFd: number, callFd: number) {
    this.eventfds.setKickFd(kickFd)
    this.eventfds.callFd = callFd
  }

  /** Watch `kickFd` (unless stopping) and signal `callFd` from now on; the old ones are untouched afterwards. */
  setEventfds(kickFd: number, callFd: number): void {
    if (!this.stopping && kickFd !== this.eventfds.kickFd) this.eventfds.setKickFd(kickFd)
    this.eventfds.callFd = callFd
  }
}

/** Serves rings for the main thread until the worker ends. */
export class IoThreadHost {
  private readonly port: IoThreadPort
  private readonly log: IoThreadLog
  private readonly tagSet: TagSet
  private readonly queues: QueueSet
  private readonly rings = new Map<number, ThreadRing>()
  private readonly memories = new Map<number, { mem: GuestMemory; users: number }>()

  /** Starts listening and tells the main thread it is ready. */
  constructor(opts: IoThreadHostOptions) {
    this.port = opts.port
    this.log = opts.log
    this.tagSet = opts.tagSet
    this.queues = new QueueSet(opts.tagSet, opts.disk, (vring, reason) =>
      opts.log.error({ vring, reason }, 'guest corrupted its ring: queue stopped'), opts.pollUs)
    this.port.on('message', (message) => this.onMessage(message))
    this.port.postMessage({ type: 'ready' })
  }

  private onMessage(message: ToIoThread): void {
    switch (message.type) {
      case 'start':
        this.start(message)
        return
      case 'kick':
        this.rings.get(message.queue)?.queue?.kick()
        return
      case 'eventfds':
        this.rings.get(message.queue)?.setEventfds(message.kickFd, message.callFd)
        this.port.postMessage({ type: 'eventfds-done', queue: message.queue })
        return
      case 'stop':
        void this.stop(message.queue)
        return
    }
  }

  private start(m: StartMessage): void {
    let mem: GuestMemory
    try {
      mem = this.acquireMemory(m.memory, m.regions)
    } catch (err) {
      this.refuse(m.queue, err)
      return
    }
    let ring: ThreadRing
    try {
      const vq = new SplitQueue(mem, m.layout)
      vq.nextAvail = m.nextAvail
      vq.nextUsed = m.nextUsed
      ring = new ThreadRing(vq, m.memory, m.kickFd, m.callFd)
    } catch (err) {
      this.releaseMemory(m.memory)
      this.refuse(m.queue, err)
      return
    }
    ring.queue = this.queues.start(m.vring, ring.vq, mem, this.tagSet.hwQueues[m.hwq], ring.eventfds.notify)
    ring.eventfds.start()
    this.rings.set(m.queue, ring)
    this.log.debug({ vring: m.vring, hwq: m.hwq, memory: m.memory }, 'ring served on this I/O thread')
  }

  /**
   * Stops taking chains, waits for those taken, unmaps memory no ring uses, then answers. While
   * it waits, the ring still takes a new call fd (completions signal the guest meanwhile).
   */
  private async stop(id: number): Promise<void> {
    const ring = this.rings.get(id)
    if (ring === undefined || ring.stopping) {
      this.port.postMessage({ type: 'stopped', queue: id, nextAvail: -1, nextUsed: -1 })
      return
    }
    ring.stopping = true
    ring.eventfds.close()
    await ring.queue?.stop()
    this.rings.delete(id)
    this.releaseMemory(ring.memory)
    this.port.postMessage({ type: 'stopped', queue: id, nextAvail: ring.vq.nextAvail, nextUsed: ring.vq.nextUsed })
  }

  private refuse(id: number, err: unknown): void {
    const e = err as Error & { code?: string }
    this.port.postMessage({ type: 'failed', queue: id, code: e.code ?? e.name, message: e.message })
  }

  /** The mapping of memory table `id`, made from `regions` if this thread has none yet. */
  private acquireMemory(id: number, regions: readonly RegionFd[]): GuestMemory {
    let entry = this.memories.get(id)
    if (entry === undefined) {
      entry = { mem: mapRegions(regions), users: 0 }
      this.memories.set(id, entry)
    }
    entry.users++
    return entry.mem
  }

  private releaseMemory(id: number): void {
    const entry = this.memories.get(id)
    if (entry === undefined || --entry.users > 0) return
    this.memories.delete(id)
    entry.mem.dispose(unmapWindow)
  }
}
