/**
 * Shared set-up for the mq tests: a TagSet over a TestDisk with one GenDisk, the owner's side of
 * the hardware queues recorded (every `onEnd`, every `onRestart`), and small helpers that play the
 * owner (fill a request's segments or ranges, allocate and dispatch).
 */
import { GenDiskBuilder, TagSet } from '../../src/mq/index.js'
import type { BlkStatus, GenDisk, HwQueue, Request, TagSetOptions } from '../../src/mq/index.js'
import { TestDisk } from '../helpers/disks.js'
import type { TestDiskOptions } from '../helpers/disks.js'

/** What the owner saw in `onEnd`. */
export interface Ended {
  hwq: number
  tag: number
  generation: number
  status: BlkStatus
  op: number
  sector: number
  bytesDone: number
  disk: GenDisk | null
}

/** A tag set, its driver, a disk and the owner's record. */
export interface Harness {
  ts: TagSet
  driver: TestDisk
  disk: GenDisk
  hwq: HwQueue
  ended: Ended[]
  restarts: number[]
}

/** Build a harness; `tagSet` overrides TagSet options, `driver` TestDisk options. */
export function setup(tagSet: Partial<TagSetOptions> = {}, driver: Partial<TestDiskOptions> = {}): Harness {
  const testDisk = new TestDisk({ size: 1 << 20, ...driver })
  const ts = new TagSet({ nrHwQueues: 1, queueDepth: 4, ops: testDisk, ...tagSet })
  const disk = new GenDiskBuilder().name('test').capacityBytes(1 << 20).serial('SERIAL-1')
    .discard({ maxSectors: 1 << 16, maxSegments: ts.maxRanges, granularitySectors: 1 })
    .writeZeroes({ maxSectors: 1 << 16, maxSegments: ts.maxRanges, mayUnmap: true })
    .build(ts)
  const h: Harness = { ts, driver: testDisk, disk, hwq: ts.hwQueues[0], ended: [], restarts: [] }
  for (const q of ts.hwQueues) {
    q.onEnd = (rq) => {
      h.ended.push({
        hwq: rq.hwq.index, tag: rq.tag, generation: rq.generation, status: rq.status, op: rq.op,
        sector: rq.sector, bytesDone: rq.bytesDone, disk: rq.disk,
      })
    }
    q.onRestart = () => { h.restarts.push(q.index) }
  }
  return h
}

/** Point the request's data segments at `buffers` (whole buffers). */
export function setSegments(rq: Request, buffers: Uint8Array[]): void {
  for (let i = 0; i < buffers.length; i++) {
    rq.segBuffer[i] = buffers[i]
    rq.segOffset[i] = 0
    rq.segLength[i] = buffers[i].length
  }
  rq.nrSegments = buffers.length
}

/** Allocate a request on `hwq` for `disk`, let `fill` set it up, dispatch it; returns it (or null if no tag). */
export function submit(hwq: HwQueue, disk: GenDisk, fill: (rq: Request) => void = () => {}, isLast = true): Request | null {
  const rq = hwq.tryAllocRequest(disk)
  if (rq === null) return null
  fill(rq)
  hwq.dispatch(rq, isLast)
  return rq
}

/** Like `submit`, for tests that expect a free tag. */
export function mustSubmit(hwq: HwQueue, disk: GenDisk, fill?: (rq: Request) => void, isLast?: boolean): Request {
  const rq = submit(hwq, disk, fill, isLast)
  if (rq === null) throw new Error('no free tag')
  return rq
}

/** Run `fn` and return the `code` of what it throws (undefined if it does not throw). */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}
