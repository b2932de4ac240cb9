/**
 * Entry point of one I/O thread (a worker started by io-threads.ts): builds what `workerData`
 * describes (the driver over the shared storage, a TagSet of the hardware queues this thread
 * serves, the GenDisk) and serves rings for the main thread until the worker is terminated.
 * Log records go to the main thread's logger.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { IoThreadHost, IoThreadLog } from '../blk/io-thread-host.js'
import { initBlkRequest } from '../blk/request-state.js'
import { WriteCacheMode } from '../blk/write-cache.js'
import { TagSet } from '../mq/index.js'
import { buildDisk, openDriver, type IoThreadData } from './io-threads.js'

const data = workerData as IoThreadData
// INVARIANT: this module only runs as a worker (io-threads.ts starts it), which has a parent port.
const port = parentPort!
const log = new IoThreadLog(port)
const ops = openDriver(data.driver, data.hwQueues * data.tagSet.queueDepth, new WriteCacheMode(data.writeCache), log)
const tagSet = new TagSet({ ...data.tagSet, nrHwQueues: data.hwQueues, ops, initRequest: initBlkRequest })
new IoThreadHost({ port, tagSet, disk: buildDisk(data.disk, tagSet), log, pollUs: data.pollUs })
