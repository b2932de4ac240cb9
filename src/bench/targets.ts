/**
 * The back-ends the benchmark matrix compares, started as users start them: our server
 * (`node dist/cli.js`) with a memory, file or null disk, and qemu-storage-daemon's vhost-user-blk
 * export of the same kind of backing store (a file on tmpfs, or driver=null-co). A target that
 * cannot start (an option not implemented yet, qemu-storage-daemon not installed) is skipped with
 * the reason, never silently.
 *
 * Owns: the command lines, backing-file preparation, waiting for the socket, and stopping.
 * Does not own: what is measured (matrix.ts) or how (run.ts).
 */
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** The targets, in the order the table lists them. */
export const TARGET_NAMES = ['ours-memory', 'ours-file', 'qsd-file', 'ours-null', 'qsd-null'] as const
/** One of TARGET_NAMES. */
export type TargetName = (typeof TARGET_NAMES)[number]

/** What a target is and which qemu-storage-daemon target it is compared with. */
export interface TargetSpec {
  name: TargetName
  server: 'ours' | 'qsd'
  backing: 'memory' | 'file' | 'null'
  /** The reference for the ratio columns (null for the references themselves). */
  comparedWith: TargetName | null
}

/** Every target. ours --memory is compared with qsd on a tmpfs file: the fastest store qsd serves data from. */
export const TARGETS: readonly TargetSpec[] = [
  { name: 'ours-memory', server: 'ours', backing: 'memory', comparedWith: 'qsd-file' },
  { name: 'ours-file', server: 'ours', backing: 'file', comparedWith: 'qsd-file' },
  { name: 'qsd-file', server: 'qsd', backing: 'file', comparedWith: null },
  { name: 'ours-null', server: 'ours', backing: 'null', comparedWith: 'qsd-null' },
  { name: 'qsd-null', server: 'qsd', backing: 'null', comparedWith: null },
]

/** Where and how targets run. */
export interface TargetEnv {
  /** Directory for sockets. */
  socketDir: string
  /** Directory for backing files (tmpfs: /dev/shm). */
  fileDir: string
  /** Disk size in bytes. */
  sizeBytes: number
  /** Queues every server offers. */
  numQueues: number
  /** Our server's entry point (dist/cli.js, or another build to compare). */
  serverCli: string
}

/** A started back-end. */
export interface RunningTarget {
  spec: TargetSpec
  socketPath: string
  /** The server process (its CPU time is what --server-pid measures). */
  pid: number
  /** The command line, for the record. */
  command: string[]
  /** Anything worth recording (e.g. the aio mode qsd accepted). */
  notes: string
  /** SIGTERM, SIGKILL after 5 s; removes the backing file. Idempotent. */
  stop(): Promise<void>
}

/** The target could not start; `reason` says why, for the printed table. */
export class TargetSkipped extends Error {
  override readonly name = 'TargetSkipped'
  readonly code = 'EBENCH_TARGET_SKIPPED'
}

/** Path of qemu-storage-daemon, or null. */
export function findQsd(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { encoding: 'utf8' })
  const p = r.stdout?.trim() ?? ''
  return r.status === 0 && p !== '' ? p : null
}

/** `qemu-storage-daemon --version`'s first line, or null. */
export function qsdVersion(): string | null {
  const bin = findQsd()
  if (bin === null) return null
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' })
  return r.stdout?.split('\n')[0]?.trim() ?? null
}

/** Starts `spec`; throws TargetSkipped when it cannot run here. */
export async function startTarget(spec: TargetSpec, env: TargetEnv): Promise<RunningTarget> {
  const socketPath = path.join(env.socketDir, `${spec.name}.sock`)
  const imagePath = spec.backing === 'file' ? path.join(env.fileDir, `${spec.name}.img`) : null
  if (imagePath !== null) createImage(imagePath, env.sizeBytes)
  const removeImage = (): void => {
    if (imagePath !== null) fs.rmSync(imagePath, { force: true })
  }
  try {
    if (spec.server === 'ours') {
      const disk = spec.backing === 'memory' ? ['--memory', String(env.sizeBytes)]
        : spec.backing === 'file' ? ['--file', imagePath as string]
        : ['--null', String(env.sizeBytes)]
      const command = [process.execPath, env.serverCli, '--socket-path', socketPath, '--num-queues', String(env.numQueues), '--log-level', 'warn', ...disk]
      return await launch(spec, socketPath, command, '', removeImage)
    }
    const bin = findQsd()
    if (bin === null) throw new TargetSkipped('qemu-storage-daemon is not installed')
    const exp = `type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=${socketPath},writable=on,num-queues=${env.numQueues}`
    if (spec.backing === 'null') {
      const blockdev = `driver=null-co,node-name=disk0,size=${env.sizeBytes},read-zeroes=off`
      return await launch(spec, socketPath, [bin, '--blockdev', blockdev, '--export', exp], 'null-co read-zeroes=off', removeImage)
    }
    // io_uring when this QEMU build has it (the same engine our file disk uses), else the thread pool.
    let lastError: unknown
    for (const aio of ['io_uring', 'threads']) {
      const blockdev = `driver=file,node-name=disk0,filename=${imagePath},cache.direct=off,aio=${aio}`
      try {
        return await launch(spec, socketPath, [bin, '--blockdev', blockdev, '--export', exp], `aio=${aio} cache.direct=off`, removeImage)
      } catch (err) {
        lastError = err
      }
    }
    throw lastError
  } catch (err) {
    removeImage()
    throw err
  }
}

/** A fully allocated image: tmpfs pages exist before the first read, as on a disk that has data. */
function createImage(file: string, size: number): void {
  const chunk = Buffer.alloc(1 << 20, 0x5a)
  const fd = fs.openSync(file, 'w')
  try {
    for (let off = 0; off < size; off += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off)
  } finally {
    fs.closeSync(fd)
  }
}

/** Spawns `command` and waits for its socket; a process that exits first is TargetSkipped with its stderr. */
async function launch(spec: TargetSpec, socketPath: string, command: string[], notes: string, cleanup: () => void): Promise<RunningTarget> {
  fs.rmSync(socketPath, { force: true })
  const proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  let exited = false
  const exit = new Promise<void>((resolve) => proc.once('exit', () => { exited = true; resolve() }))
  const deadline = Date.now() + 15_000
  while (!fs.existsSync(socketPath)) {
    if (exited || Date.now() > deadline) {
      proc.kill('SIGKILL')
      await exit
      const why = stderr.trim().split('\n').filter((l) => l !== '').slice(-1)[0] ?? 'no output'
      throw new TargetSkipped(`${spec.name} did not start: ${why}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  let stopping: Promise<void> | null = null
  return {
    spec,
    socketPath,
    pid: proc.pid as number,
    command,
    notes,
    stop: () => {
      stopping ??= (async () => {
        if (!exited) {
          proc.kill('SIGTERM')
          const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
          await exit
          clearTimeout(timer)
        }
        fs.rmSync(socketPath, { force: true })
        cleanup()
      })()
      return stopping
    },
  }
}
