/**
 * The process logger: pino JSON on stderr, pretty-printed when stderr is a terminal.
 * Stdout stays free for what users pipe (`--print-capabilities`, the QEMU arguments).
 */
import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'

/** pino levels accepted by --log-level. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Creates the logger; synchronous writes so nothing is lost when the process exits. */
export function createLogger(level: LogLevel): Logger {
  if (process.stderr.isTTY) {
    return pino({ level }, pretty({ destination: 2, sync: true, colorize: true }))
  }
  return pino({ level }, pino.destination({ fd: 2, sync: true }))
}
