/**
 * Harness for real QEMU guests (test/vm/*.test.ts).
 *
 * Owns: building the guest once per test run (`ensureAssets`), starting a backend process for one
 * guest and waiting for its socket, booting `vm/boot.sh` against it, collecting the console and its
 * `VUB-RESULT key=value` / `VUB-DONE status=N` lines, and tearing everything down (both process
 * groups, the socket, the temp dir) whatever happens: success, failure, timeout, or the test
 * process exiting.
 * Does not own: the QEMU command line (vm/boot.sh), the guest image (vm/build-assets.sh) or what the
 * guest checks (vm/scenarios/*.sh, vm/scenario-lib.sh).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const VM_DIR = path.join(ROOT, 'vm')
const BUILD_SCRIPT = path.join(VM_DIR, 'build-assets.sh')
const BOOT_SCRIPT = path.join(VM_DIR, 'boot.sh')

/** Longest a backend may take to create its socket. */
const SOCKET_WAIT_MS = 15_000
/** How long the guest may run on after its backend process exited. */
const BACKEND_DEATH_GRACE_MS = 3_000
/** How long a process group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 3_000
/** Longest the first guest build may take (it downloads the kernel package). */
const BUILD_TIMEOUT_MS = 10 * 60_000
/** Lines of console and backend log quoted in an error. */
const TAIL_LINES = 60
/** Output kept per process; older output is dropped (fio can be chatty). */
const MAX_LOG_CHARS = 4 * 1024 * 1024

/** Stable codes carried by every {@link VmHarnessError}. */
export type VmHarnessErrorCode =
  /** vm/build-assets.sh failed or timed out. */
  | 'EVM_BUILD_FAILED'
  /** The backend process exited before creating its socket, or while the guest ran. */
  | 'EVM_BACKEND_EXITED'
  /** The backend did not create its socket in time, or a given socket path is not a socket. */
  | 'EVM_NO_SOCKET'
  /** The guest ran past `timeoutMs`; QEMU was killed. */
  | 'EVM_TIMEOUT'
  /** QEMU stopped without the guest printing `VUB-DONE` (boot failure, crash, backend hang-up). */
  | 'EVM_NO_RESULT'

/** Failure of the VM harness itself (not of a scenario: that is a non-zero `status`). */
export class VmHarnessError extends Error {
  /** Stable machine-readable reason. */
  readonly code: VmHarnessErrorCode

  /**
   * @param code - stable reason code
   * @param message - human-readable detail, with console and backend log tails
   */
  constructor(code: VmHarnessErrorCode, message: string) {
    super(message)
    this.name = 'VmHarnessError'
    this.code = code
    Error.captureStackTrace(this, new.target)
  }
}

/**
 * The vhost-user-blk backend a guest talks to: a command the harness starts (and stops), or the
 * socket of a backend the caller runs. In `args`, `{socket}` is replaced with the socket path the
 * harness chose (the backend must create and listen on it) and `{dir}` with the guest's temp dir;
 * the command also gets the socket path in `VUB_SOCKET`.
 */
export type GuestBackend = { command: string; args: string[] } | { socketPath: string }

/** Options of {@link runGuest}. */
export interface RunGuestOptions {
  backend: GuestBackend
  /** A vm/scenarios/NAME.sh scenario (not `shell`). */
  scenario: string
  /** virtqueues QEMU asks for (`num-queues`); the guest gets min(numQueues, 4) vCPUs. Default 1. */
  numQueues?: number
  /** Ring size QEMU asks for (`queue-size`). Default 128. */
  queueSize?: number
  /** Kill QEMU and fail after this long (boot included). Default 120 000. */
  timeoutMs?: number
  /** More kernel parameters, e.g. `vub.args=size_mib=4,jobs=1`. */
  kernelArgs?: string
  /** QEMU reconnects to the socket after the backend went away (`-chardev ...,reconnect=1`). */
  reconnect?: boolean
  /** Called with the console text so far whenever it grows (to act on a scenario's phase lines). */
  onConsole?: (console: string) => void
}

/** What one guest run produced. */
export interface GuestRun {
  /** The scenario's exit status from `VUB-DONE status=N` (0 = every check passed). */
  status: number
  /** Every `VUB-RESULT key=value` line; a later line wins over an earlier one with the same key. */
  results: Record<string, string>
  /** Everything boot.sh and QEMU printed (serial console, QEMU errors), with `\r` removed. */
  console: string
  /** Everything the backend process printed ('' for a `socketPath` backend). */
  backendLog: string
}

/** Process groups and temp dirs still alive; removed synchronously if the test process exits. */
const live = { groups: new Set<number>(), dirs: new Set<string>() }
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const pgid of live.groups) signalGroup(pgid, 'SIGKILL')
    for (const dir of live.dirs) fs.rmSync(dir, { recursive: true, force: true })
  })
}

/** Whether an executable called `name` is on PATH (or `name` is an executable path). */
export function commandAvailable(name: string): boolean {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== '').map((d) => path.join(d, name))
  return candidates.some((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return fs.statSync(file).isFile()
    } catch {
      return false
    }
  })
}

/** Whether QEMU for x86-64 guests (`VUB_QEMU` or qemu-system-x86_64) is installed. */
export function qemuAvailable(): boolean {
  return commandAvailable(process.env.VUB_QEMU ?? 'qemu-system-x86_64')
}

let assets: Promise<void> | undefined

/**
 * Builds the guest kernel and initramfs (vm/build-assets.sh) unless they are up to date. Runs the
 * script once per test process; the script itself serialises concurrent runs from several workers
 * with flock on vm/.cache/build.lock, and is fast (~0.1 s) when nothing changed.
 */
export function ensureAssets(): Promise<void> {
  assets ??= buildAssets().catch((err: unknown) => {
    assets = undefined
    throw err
  })
  return assets
}

async function buildAssets(): Promise<void> {
  const build = startProc(BUILD_SCRIPT, [], process.env)
  const timer = setTimeout(() => signalGroup(build.child.pid, 'SIGKILL'), BUILD_TIMEOUT_MS)
  try {
    const code = await build.done
    if (code !== 0) {
      throw new VmHarnessError(
        'EVM_BUILD_FAILED',
        `vm/build-assets.sh exited with ${code}:\n${tail(build.output(), TAIL_LINES)}`,
      )
    }
  } finally {
    clearTimeout(timer)
    await stopProc(build)
  }
}

/**
 * Boots one guest running `opts.scenario` against the backend and resolves with its results.
 * Resolves (with a non-zero `status`) when the scenario ran and reported failures; rejects with a
 * {@link VmHarnessError} when the guest could not report at all, quoting the console and backend log.
 * Always kills QEMU and a started backend and removes the temp dir before settling.
 */
export async function runGuest(opts: RunGuestOptions): Promise<GuestRun> {
  const timeoutMs = opts.timeoutMs ?? 120_000
  await ensureAssets()
  installExitHook()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-vm-'))
  live.dirs.add(dir)
  let backend: Proc | undefined
  let boot: Proc | undefined
  try {
    let socketPath: string
    if ('socketPath' in opts.backend) {
      socketPath = opts.backend.socketPath
      if (!isSocket(socketPath)) {
        throw new VmHarnessError('EVM_NO_SOCKET', `${socketPath} is not a Unix socket`)
      }
    } else {
      socketPath = path.join(dir, 'vhost.sock')
      const args = opts.backend.args.map((a) => a.replaceAll('{socket}', socketPath).replaceAll('{dir}', dir))
      // coreutils timeout is a backstop: if this process is killed before it can clean up, the
      // backend still ends (boot.sh has the same backstop for QEMU). --foreground keeps the
      // backend in the process group that stopProc kills.
      const backstop = String(Math.ceil(timeoutMs / 1000) + 60)
      backend = startProc('timeout', ['--foreground', '-k', '5', backstop, opts.backend.command, ...args], {
        ...process.env,
        VUB_SOCKET: socketPath,
      })
      await waitForSocket(backend, socketPath)
    }

    boot = startProc(
      BOOT_SCRIPT,
      [socketPath, opts.scenario, String(opts.numQueues ?? 1), String(opts.queueSize ?? 128)],
      {
        ...process.env,
        // boot.sh's console copy lands in our temp dir, removed even if boot.sh is SIGKILLed.
        TMPDIR: dir,
        VUB_NO_BUILD: '1',
        // A backstop in case this process dies without cleaning up; our own timer fires first.
        VUB_TIMEOUT: String(Math.ceil(timeoutMs / 1000) + 30),
        VUB_KERNEL_ARGS: opts.kernelArgs ?? '',
        VUB_RECONNECT: opts.reconnect === true ? '1' : '',
      },
      opts.onConsole,
    )
    let timedOut = false
    let backendDied = false
    const bootPgid = boot.child.pid
    const timer = setTimeout(() => {
      timedOut = true
      signalGroup(bootPgid, 'SIGKILL')
    }, timeoutMs)
    // A backend that dies mid-run leaves the guest's I/O hanging until the timeout; stop the guest
    // soon after instead (the grace lets a guest that already finished power off and report).
    let deathTimer: NodeJS.Timeout | undefined
    let bootEnded = false
    void backend?.done.then(() => {
      if (bootEnded) return
      backendDied = true
      deathTimer = setTimeout(() => signalGroup(bootPgid, 'SIGKILL'), BACKEND_DEATH_GRACE_MS)
    })
    let bootCode: number | null
    try {
      bootCode = await boot.done
    } finally {
      bootEnded = true
      clearTimeout(timer)
      clearTimeout(deathTimer)
    }

    const text = boot.output()
    const parsed = parseConsole(text)
    const backendLog = backend?.output() ?? ''
    if (parsed.status === undefined) {
      const [code, why]: [VmHarnessErrorCode, string] = backendDied
        ? ['EVM_BACKEND_EXITED', `the backend exited (${backend?.child.exitCode ?? backend?.child.signalCode}) while the guest ran`]
        : timedOut
          ? ['EVM_TIMEOUT', `the guest did not finish within ${timeoutMs} ms; QEMU was killed`]
          : ['EVM_NO_RESULT', `QEMU stopped without VUB-DONE (boot.sh exit status ${bootCode})`]
      throw new VmHarnessError(
        code,
        `${why} (scenario ${opts.scenario}).\n--- console (last ${TAIL_LINES} lines) ---\n${tail(text, TAIL_LINES)}\n` +
          `--- backend log (last ${TAIL_LINES} lines) ---\n${tail(backendLog, TAIL_LINES)}`,
      )
    }
    return { status: parsed.status, results: parsed.results, console: text, backendLog }
  } finally {
    await Promise.all([stopProc(boot), stopProc(backend)])
    fs.rmSync(dir, { recursive: true, force: true })
    live.dirs.delete(dir)
  }
}

/** The tails of a run's console and backend log, for assertion messages. */
export function runContext(run: GuestRun): string {
  return `console:\n${run.console.split('\n').slice(-60).join('\n')}\nserver log:\n${run.backendLog.split('\n').slice(-40).join('\n')}`
}

/** The `VUB-RESULT` pairs and the `VUB-DONE` status in a console transcript. */
export function parseConsole(text: string): { status: number | undefined; results: Record<string, string> } {
  const results: Record<string, string> = {}
  let status: number | undefined
  for (const line of text.split('\n')) {
    const result = /VUB-RESULT ([A-Za-z0-9_.-]+)=(.*)$/.exec(line)
    if (result !== null) {
      results[result[1]] = result[2]
      continue
    }
    const done = /VUB-DONE status=(\d+)/.exec(line)
    if (done !== null) status = Number(done[1])
  }
  return { status, results }
}

/** A child process leading its own process group, with its output and its end. */
interface Proc {
  readonly child: ChildProcess
  /** Exit code once the process ended and its stdio closed; null when killed or never started. */
  readonly done: Promise<number | null>
  /** Its stdout and stderr in arrival order (the last MAX_LOG_CHARS), `\r` removed. */
  output(): string
}

/** Starts `command` as the leader of a new process group, so the whole group can be killed. */
function startProc(command: string, args: string[], env: NodeJS.ProcessEnv, onOutput?: (text: string) => void): Proc {
  const child = spawn(command, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env })
  if (child.pid !== undefined) live.groups.add(child.pid)
  let text = ''
  const append = (chunk: Buffer | string): void => {
    text += chunk.toString().replaceAll('\r', '')
    if (text.length > MAX_LOG_CHARS) text = text.slice(text.length - MAX_LOG_CHARS)
    onOutput?.(text)
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  const done = new Promise<number | null>((resolve) => {
    child.once('close', (code) => resolve(code))
    child.once('error', (err) => {
      append(`${command}: ${err.message}\n`)
      resolve(null)
    })
  })
  return { child, done, output: () => text }
}

function ended(proc: Proc): boolean {
  const { child } = proc
  return child.pid === undefined || child.exitCode !== null || child.signalCode !== null
}

function signalGroup(pgid: number | undefined, signal: NodeJS.Signals): void {
  if (pgid === undefined) return
  try {
    process.kill(-pgid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/**
 * SIGTERM to the process's whole group, SIGKILL after KILL_GRACE_MS if the leader is still there,
 * and a final SIGKILL for members that outlived their leader (QEMU under boot.sh).
 */
async function stopProc(proc: Proc | undefined): Promise<void> {
  const pgid = proc?.child.pid
  if (proc === undefined || pgid === undefined) return
  signalGroup(pgid, 'SIGTERM')
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    proc.done,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, KILL_GRACE_MS)
    }),
  ])
  clearTimeout(timer)
  signalGroup(pgid, 'SIGKILL')
  live.groups.delete(pgid)
}

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket()
  } catch {
    return false
  }
}

async function waitForSocket(backend: Proc, socketPath: string): Promise<void> {
  const deadline = Date.now() + SOCKET_WAIT_MS
  while (!isSocket(socketPath)) {
    if (ended(backend)) {
      const { exitCode, signalCode } = backend.child
      throw new VmHarnessError(
        'EVM_BACKEND_EXITED',
        `the backend exited (${exitCode ?? signalCode ?? 'not started'}) before creating ${socketPath}:\n` +
          tail(backend.output(), TAIL_LINES),
      )
    }
    if (Date.now() > deadline) {
      throw new VmHarnessError(
        'EVM_NO_SOCKET',
        `the backend did not create ${socketPath} within ${SOCKET_WAIT_MS} ms:\n${tail(backend.output(), TAIL_LINES)}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n')
}
