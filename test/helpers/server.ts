/**
 * Runs the real server (`node dist/cli.js`, as users run it) in a child process for integration
 * tests: a temp dir, its socket, its log, its open-fd count, and a stop that always cleans up.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The built command-line entry point (`npm test` builds it first). */
export const CLI = path.join(ROOT, 'dist', 'cli.js')

/** A running server process. */
export interface ServerProcess {
  readonly socketPath: string
  readonly dir: string
  readonly proc: ChildProcess
  /** Everything it wrote to stderr so far (pino JSON lines). */
  log(): string
  /** Parsed log lines. */
  logLines(): Array<Record<string, unknown>>
  /** Open fds of the server process now. */
  fdCount(): number
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code; removes the temp dir. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/** Waits until `check()` is true (polling), or throws after `ms`. */
export async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Starts the server with `args` (socket path added unless given) and waits for its socket. */
export async function startServer(args: string[] = [], opts: { socketPath?: string } = {}): Promise<ServerProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vub-test-'))
  const socketPath = opts.socketPath ?? path.join(dir, 'blk.sock')
  const fullArgs = args.includes('--socket-path') || args.includes('--fd') ? args : ['--socket-path', socketPath, ...args]
  const proc = spawn(process.execPath, [CLI, ...fullArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  proc.stdout!.resume()
  let exited: number | null | undefined
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve((exited = code))))
  try {
    await waitFor(() => exited !== undefined || stderr.includes('"msg":"serving"'), 10_000, 'the server to listen')
    if (exited !== undefined) throw new Error(`server exited with ${exited}:\n${stderr}`)
  } catch (err) {
    proc.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    socketPath,
    dir,
    proc,
    log: () => stderr,
    logLines: () => parseLogLines(stderr),
    fdCount: () => fs.readdirSync(`/proc/${proc.pid}/fd`).length,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (exited === undefined) proc.kill(signal)
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      const code = await exit
      clearTimeout(timer)
      fs.rmSync(dir, { recursive: true, force: true })
      return code
    },
  }
}

/** The pino JSON lines of a server's stderr, parsed. */
export function parseLogLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Log lines at warn (40) or above in a server's stderr. */
export function logProblems(text: string): Array<Record<string, unknown>> {
  return parseLogLines(text).filter((l) => typeof l.level === 'number' && l.level >= 40)
}

/** Log lines at warn (40) or above. */
export function problems(server: ServerProcess): Array<Record<string, unknown>> {
  return logProblems(server.log())
}
