/**
 * The messages between the main thread (remote-queue.ts) and an I/O thread (io-thread-host.ts),
 * and the rule that places hardware queues on threads. Control path only: the data path never
 * crosses threads (an I/O thread reads the ring, serves the request and writes the call eventfd
 * itself).
 *
 * Ordering: each side handles the other's messages in the order they were posted (one
 * MessagePort), which the stop and eventfd handshakes rely on: a `stopped` or `eventfds-done`
 * answer means every earlier message of that queue was handled.
 *
 * Fds cross as plain numbers: fd numbers are process-wide. The main thread keeps every fd it sent
 * open until the queue's `stopped` (or, for a replaced eventfd, `eventfds-done`) came back.
 */
import type { RegionSpec, SplitQueueConfig } from '../virtqueue/index.js'

/** One guest memory region with the fd that backs it. */
export interface RegionFd {
  spec: RegionSpec
  fd: number
}

/** Main → I/O thread: serve a ring (the thread maps `memory` from `regions` unless it has it). */
export interface StartMessage {
  type: 'start'
  /** Queue id, unique in the process. */
  queue: number
  /** Virtqueue index (for logs). */
  vring: number
  /** Index of the hardware queue in the thread's own TagSet. */
  hwq: number
  /** Memory table id: rings of one table share one mapping on the thread. */
  memory: number
  regions: RegionFd[]
  layout: SplitQueueConfig
  nextAvail: number
  nextUsed: number
  kickFd: number
  /** -1: none. */
  callFd: number
}

/** Main → I/O thread: process what the avail ring holds (sent once after start). */
export interface KickMessage {
  type: 'kick'
  queue: number
}

/** Main → I/O thread: watch and signal these eventfds from now on; answered by `eventfds-done`. */
export interface EventfdsMessage {
  type: 'eventfds'
  queue: number
  kickFd: number
  callFd: number
}

/** Main → I/O thread: stop the ring; answered by `stopped` once everything taken completed. */
export interface StopMessage {
  type: 'stop'
  queue: number
}

/** What the main thread sends. */
export type ToIoThread = StartMessage | KickMessage | EventfdsMessage | StopMessage

/** pino levels an I/O thread logs at. */
export type IoThreadLogLevel = 'error' | 'warn' | 'info' | 'debug'

/** I/O thread → main: the thread built its disk driver and takes queues. */
export interface ReadyMessage {
  type: 'ready'
}

/** I/O thread → main: one log record, written by the main thread's logger. */
export interface LogMessage {
  type: 'log'
  level: IoThreadLogLevel
  fields: Record<string, unknown>
  msg: string
}

/** I/O thread → main: the old eventfds of `queue` are no longer used. */
export interface EventfdsDoneMessage {
  type: 'eventfds-done'
  queue: number
}

/**
 * I/O thread → main: `queue` stopped, every chain it took is completed and published, guest
 * memory the thread no longer needs is unmapped. Indices are -1 when the queue never started.
 */
export interface StoppedMessage {
  type: 'stopped'
  queue: number
  nextAvail: number
  nextUsed: number
}

/** I/O thread → main: `queue` could not start (it serves nothing; `stopped` still follows a stop). */
export interface FailedMessage {
  type: 'failed'
  queue: number
  code: string
  message: string
}

/** What an I/O thread sends. */
export type FromIoThread = ReadyMessage | LogMessage | EventfdsDoneMessage | StoppedMessage | FailedMessage

/** The I/O thread that serves hardware queue `hwq` of `threads`: hwq mod threads. */
export function threadOfHwq(hwq: number, threads: number): number {
  return hwq % threads
}

/** Index of hardware queue `hwq` in its thread's own TagSet (the thread holds only the ones it serves). */
export function localHwq(hwq: number, threads: number): number {
  return Math.floor(hwq / threads)
}

/** How many of `hwQueues` hardware queues thread `thread` of `threads` serves. */
export function hwQueuesOfThread(thread: number, threads: number, hwQueues: number): number {
  return thread < hwQueues ? Math.floor((hwQueues - 1 - thread) / threads) + 1 : 0
}
