/**
 * Rate-limited logging of host I/O errors: at most one line per errno code per interval, and a
 * count of the lines held back, so a failing disk cannot flood the log while every failed
 * request is still accounted for.
 *
 * Owns the limiter only. Runs on the error path, so it may allocate.
 */
import os from 'node:os'

/** The part of a pino logger this module uses. */
export interface DiskLogger {
  error(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  info(obj: object, msg: string): void
}

/** errno number → name ('ENOSPC'), from Node's table. */
const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

/** The name of a negative (or positive) errno, e.g. -28 → 'ENOSPC'. */
export function errnoName(res: number): string {
  return ERRNO_NAMES.get(Math.abs(res)) ?? `errno ${Math.abs(res)}`
}

interface CodeState {
  /** When the last line for this code was written (ms since epoch). */
  last: number
  /** Errors held back since then. */
  suppressed: number
  /** Writes the held-back count when the interval ends, if no new line did. */
  timer: NodeJS.Timeout | null
}

/** Logs I/O errors, at most one line per code per `intervalMs`. */
export class IoErrorLog {
  private readonly codes = new Map<string, CodeState>()

  /**
   * @param log - where lines go (level error)
   * @param what - names the disk in every line (e.g. the image path)
   * @param intervalMs - the per-code interval (default 1 s)
   */
  constructor(private readonly log: DiskLogger, private readonly what: string, private readonly intervalMs = 1000) {}

  /**
   * Reports one failed operation. `fields` describe it (operation, sector...). Writes a line now
   * when this code's interval has passed, else counts it; a held-back count is written with the
   * next line, or at the end of the interval.
   */
  report(res: number, fields: Record<string, unknown>): void {
    const code = errnoName(res)
    const now = Date.now()
    let state = this.codes.get(code)
    if (state === undefined) {
      state = { last: -Infinity, suppressed: 0, timer: null }
      this.codes.set(code, state)
    }
    if (now - state.last < this.intervalMs) {
      state.suppressed++
      if (state.timer === null) {
        const s = state
        s.timer = setTimeout(() => this.flushSuppressed(code, s), this.intervalMs - (now - state.last))
        s.timer.unref()
      }
      return
    }
    const suppressed = state.suppressed
    state.suppressed = 0
    state.last = now
    if (state.timer !== null) {
      clearTimeout(state.timer)
      state.timer = null
    }
    this.log.error({ image: this.what, code, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, 'I/O error: request failed')
  }

  /** Stops pending timers (at close); held-back counts are written now. */
  close(): void {
    for (const [code, state] of this.codes) {
      if (state.timer !== null) {
        clearTimeout(state.timer)
        this.flushSuppressed(code, state)
      }
    }
  }

  private flushSuppressed(code: string, state: CodeState): void {
    state.timer = null
    if (state.suppressed === 0) return
    const suppressed = state.suppressed
    state.suppressed = 0
    state.last = Date.now()
    this.log.error({ image: this.what, code, suppressed }, 'I/O errors: more requests failed')
  }
}
