/**
 * The listening socket: creates it (mode 0600 unless told otherwise, replacing a stale socket
 * file but never a live one), or serves on an inherited listening fd (`--fd`, as libvirt does).
 * Serves one frontend at a time: while a session lives, further connections wait in the backlog;
 * when it ends (after its teardown), the next one is accepted, so QEMU's `reconnect=N` works.
 *
 * Knows nothing of the protocol beyond handing each accepted fd to a Session.
 */
import fs from 'node:fs'
import type { Logger } from 'pino'
import * as native from '../native/index.js'
import type { VhostUserDevice } from './device.js'
import { VhostUserError } from './messages.js'
import { Session } from './session.js'

/** How to listen. Exactly one of socketPath / listenFd. */
export interface ServerOptions {
  socketPath?: string
  listenFd?: number
  /** File mode of a socket we create (default 0o600: only our user may connect). */
  socketMode?: number
  device: VhostUserDevice
  log: Logger
}

/** Throws if `path` holds a live server or something that is not a socket; removes a stale socket. */
function clearStaleSocket(path: string): void {
  let st: fs.Stats
  try {
    st = fs.lstatSync(path)
  } catch {
    return
  }
  if (!st.isSocket()) {
    throw new VhostUserError('EVHOST_SOCKET_IN_USE', `${path} exists and is not a socket; refusing to replace it`)
  }
  let fd = -1
  try {
    fd = native.unixConnect(path)
  } catch (err) {
    if ((err as { code?: string }).code === 'ECONNREFUSED') {
      fs.unlinkSync(path)
      return
    }
    throw err
  }
  native.close(fd)
  throw new VhostUserError('EVHOST_SOCKET_IN_USE', `another server is listening on ${path}`)
}

/** A vhost-user server for one device. */
export class VhostUserServer {
  private readonly listenFd: number
  private readonly poller: native.Poller
  private session: Session | null = null
  private sessionEnded: Promise<void> = Promise.resolve()
  private closing = false

  private constructor(
    private readonly opts: ServerOptions,
    listenFd: number,
  ) {
    this.listenFd = listenFd
    this.poller = new native.Poller(listenFd, () => this.accept())
    this.poller.start()
  }

  /** Starts listening. Throws VhostUserError('EVHOST_SOCKET_IN_USE') when another server owns the path. */
  static listen(opts: ServerOptions): VhostUserServer {
    if (opts.listenFd !== undefined) {
      native.setNonBlocking(opts.listenFd)
      opts.log.info({ fd: opts.listenFd }, 'listening on inherited socket')
      return new VhostUserServer(opts, opts.listenFd)
    }
    const path = opts.socketPath as string
    clearStaleSocket(path)
    const fd = native.unixListen(path, opts.socketMode ?? 0o600, 16)
    opts.log.info({ socketPath: path }, 'listening')
    return new VhostUserServer(opts, fd)
  }

  /** Whether a frontend is connected now. */
  get connected(): boolean {
    return this.session !== null
  }

  /**
   * Stops accepting, disconnects the frontend after its requests in flight complete, and removes
   * the socket file we created.
   */
  async close(): Promise<void> {
    if (this.closing) return this.sessionEnded
    this.closing = true
    this.poller.close()
    this.session?.close()
    await this.sessionEnded
    native.close(this.listenFd)
    if (this.opts.socketPath !== undefined && this.opts.listenFd === undefined) {
      fs.rmSync(this.opts.socketPath, { force: true })
    }
  }

  private accept(): void {
    if (this.session !== null || this.closing) return
    let fd: number
    try {
      fd = native.unixAccept(this.listenFd)
    } catch (err) {
      this.opts.log.error({ err }, 'accept failed')
      return
    }
    if (fd < 0) return
    this.opts.log.info({ fd }, 'frontend connected')
    // One frontend at a time: later connections wait in the backlog until this one ends.
    this.poller.stop()
    let ended!: () => void
    this.sessionEnded = new Promise((resolve) => (ended = resolve))
    this.session = new Session(fd, this.opts.device, this.opts.log, () => {
      this.session = null
      ended()
      if (this.closing) return
      this.poller.start()
      this.accept()
    })
  }
}
