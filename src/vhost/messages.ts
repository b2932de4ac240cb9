/**
 * vhost-user wire format: request codes, feature bit numbers, the 12-byte header, the payload
 * layouts (codecs) and the per-request size and fd rules checked before a message is dispatched.
 * Source: QEMU docs/interop/vhost-user.rst ("Message Specification", "Front-end message types").
 *
 * Owns: byte layouts and the structural validity of one message taken alone.
 * Does not own: socket I/O and fd lifetimes (connection.ts), what a request means or whether it is
 * legal in the current state or with the negotiated features (server.ts), guest memory.
 *
 * Byte order: the spec says "machine native byte order"; every codec here reads and writes
 * little-endian, the order of every host this project runs on (the daemon asserts
 * `os.endianness() === 'LE'` at startup).
 *
 * u64 fields that hold addresses or sizes are decoded to `number` and rejected when they reach
 * 2^53 (STYLE.md §4); feature words stay `bigint` (decodeU64/encodeU64), control path only.
 */

/** Requests the front-end sends to the back-end (ids from vhost-user.rst "Front-end message types"). */
export const FrontendReq = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHARED_OBJECT: 41,
  SET_DEVICE_STATE_FD: 42,
  CHECK_DEVICE_STATE: 43,
} as const

/** Requests the back-end sends to the front-end on the back-end channel (SET_BACKEND_REQ_FD). */
export const BackendReq = {
  IOTLB_MSG: 1,
  CONFIG_CHANGE_MSG: 2,
  VRING_HOST_NOTIFIER_MSG: 3,
  VRING_CALL: 4,
  VRING_ERR: 5,
  SHARED_OBJECT_ADD: 6,
  SHARED_OBJECT_REMOVE: 7,
  SHARED_OBJECT_LOOKUP: 8,
} as const

/** Protocol feature BIT NUMBERS (test with hasFeature, never `&` them directly). */
export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
  XEN_MMAP: 17,
  SHARED_OBJECT: 18,
  DEVICE_STATE: 19,
} as const

/** Bit number, in the virtio feature word, that announces GET/SET_PROTOCOL_FEATURES support. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30
/** Bit number, in the virtio feature word, of dirty-page logging for live migration. */
export const VHOST_F_LOG_ALL = 26

/** True when bit number `bit` is set in the feature word. */
export function hasFeature(features: bigint, bit: number): boolean {
  return ((features >> BigInt(bit)) & 1n) === 1n
}

/** The feature word with only bit number `bit` set. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit)
}

/** Bit number, in SET_VRING_ADDR flags, that turns on used-ring dirty logging. */
export const VHOST_VRING_F_LOG = 0

/** Bytes in a message header: request u32, flags u32, size u32. */
export const HEADER_SIZE = 12
/** The protocol version carried in flags bits 0-1. */
export const VERSION = 0x1
/** flags bits 0-1. */
export const VERSION_MASK = 0x3
/** flags bit 2: set on every reply from the back-end. */
export const FLAG_REPLY = 0x4
/** flags bit 3: the sender asks for an ack (REPLY_ACK). */
export const FLAG_NEED_REPLY = 0x8
/** Most fds one message may carry (vhost-user.rst: "at most 8 descriptors in each message"). */
export const MAX_FDS = 8
/**
 * Largest payload accepted. The biggest legitimate payloads are a full SET_MEM_TABLE
 * (8 + 8 * 32 = 264 bytes), a config-space access (12 + 256) and a crypto session description
 * (a few hundred bytes); 4096 covers all of them with room and matches rust-vmm's MAX_MSG_SIZE,
 * while keeping a hostile size from making us allocate more than one page per message.
 */
export const MAX_PAYLOAD_SIZE = 4096
/** SET_VRING_KICK/CALL/ERR payload bit 8: no fd attached (poll instead). */
export const VRING_NOFD_MASK = 0x100
/** SET_VRING_KICK/CALL/ERR payload bits 0-7: the vring index. */
export const VRING_INDEX_MASK = 0xff
/** Most regions in one SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS; also DPDK's limit). */
export const MAX_MEM_REGIONS = 8
/** Largest config-space access (QEMU's VHOST_USER_MAX_CONFIG_SIZE); virtio-blk's is 96 bytes. */
export const MAX_CONFIG_SIZE = 256
/** GET_CONFIG/SET_CONFIG flags value for a write the guest made to a writable field. */
export const CONFIG_TYPE_FRONTEND = 0
/** GET_CONFIG/SET_CONFIG flags value for a write made by live migration. */
export const CONFIG_TYPE_MIGRATION = 1

/** Payload sizes of the fixed layouts. */
export const U64_SIZE = 8
export const VRING_STATE_SIZE = 8
export const VRING_ADDR_SIZE = 40
export const MEM_REGION_SIZE = 32
/** nregions u32 + padding u32 before the regions of SET_MEM_TABLE. */
export const MEM_TABLE_HEADER_SIZE = 8
/** u64 padding + one region (ADD_MEM_REG / REM_MEM_REG). */
export const SINGLE_MEM_REGION_SIZE = 40
/** offset u32, size u32, flags u32 before the config bytes. */
export const CONFIG_HEADER_SIZE = 12
/** mmap size u64, mmap offset u64 (SET_LOG_BASE). */
export const LOG_SIZE = 16
/** mmap size u64, mmap offset u64, num queues u16, queue size u16, 4 bytes of C struct padding. */
export const INFLIGHT_SIZE = 24
/** struct vhost_iotlb_msg: iova, size, uaddr u64; perm, type u8; C padding to 32. */
export const IOTLB_SIZE = 32
/** VhostUserShared: a 16-byte UUID. */
export const SHARED_OBJECT_SIZE = 16
/** Device state transfer parameters: direction u32, phase u32. */
export const DEVICE_STATE_SIZE = 8

/** A message header. `flags` includes the version bits. */
export interface MessageHeader {
  request: number
  flags: number
  size: number
}

/** Stable codes of VhostUserError. */
export type VhostUserErrorCode =
  /** Fewer than HEADER_SIZE bytes, or the stream ended inside a message. */
  | 'EVHOST_TRUNCATED'
  /** flags bits 0-1 are not VERSION. */
  | 'EVHOST_BAD_VERSION'
  /** Unknown flag bits, or REPLY set on a request. */
  | 'EVHOST_BAD_FLAGS'
  /** header.size above MAX_PAYLOAD_SIZE. */
  | 'EVHOST_PAYLOAD_TOO_LARGE'
  /** Payload size differs from what the request's layout demands. */
  | 'EVHOST_BAD_SIZE'
  /** Request code not in FrontendReq. */
  | 'EVHOST_UNKNOWN_REQUEST'
  /** Wrong number of fds attached for the request. */
  | 'EVHOST_BAD_FDS'
  /** A payload field is out of range (u64 >= 2^53, region count, reserved bits, inconsistent sizes). */
  | 'EVHOST_BAD_PAYLOAD'
  // Raised by the connection state machine (session.ts, vring.ts, memory-table.ts, server.ts):
  /** Vring index out of range for the device. */
  | 'EVHOST_BAD_INDEX'
  /** Request not legal in the connection's current state. */
  | 'EVHOST_BAD_STATE'
  /** Known request that this back-end does not implement or was not negotiated. */
  | 'EVHOST_UNSUPPORTED'
  /** Feature or protocol-feature bits that were never offered. */
  | 'EVHOST_BAD_FEATURES'
  /** A memory region that cannot be mapped, removed or added. */
  | 'EVHOST_BAD_REGION'
  /** Bad ring size or ring placement. */
  | 'EVHOST_BAD_RING'
  /** A config-space access the device refuses. */
  | 'EVHOST_BAD_CONFIG'
  /** The listening socket path belongs to something else. */
  | 'EVHOST_SOCKET_IN_USE'

/** The vhost layer's error: a malformed or illegal message. Assert on `code`, not the message. */
export class VhostUserError extends Error {
  override readonly name = 'VhostUserError'
  /** The request being processed, when known. */
  readonly request?: number

  constructor(readonly code: VhostUserErrorCode, message: string, request?: number) {
    super(request === undefined ? message : `${requestName(request)}: ${message}`)
    if (request !== undefined) this.request = request
    Error.captureStackTrace?.(this, VhostUserError)
  }
}

const requestNames: ReadonlyMap<number, string> = new Map(
  Object.entries(FrontendReq).map(([name, code]) => [code, name]),
)

/** The spec name of a front-end request code, or `UNKNOWN(n)`; for logs and error messages. */
export function requestName(code: number): string {
  return requestNames.get(code) ?? `UNKNOWN(${code})`
}

const KNOWN_FLAGS = VERSION_MASK | FLAG_REPLY | FLAG_NEED_REPLY

/**
 * Decodes the first HEADER_SIZE bytes. Checks what every message must satisfy: version bits == 1,
 * no unknown flag bits, size <= MAX_PAYLOAD_SIZE (so a hostile size never drives an allocation).
 * The request code is not checked here: replies and back-end requests share this header.
 */
export function decodeHeader(bytes: Uint8Array): MessageHeader {
  if (bytes.length < HEADER_SIZE) {
    throw new VhostUserError('EVHOST_TRUNCATED', `header needs ${HEADER_SIZE} bytes, got ${bytes.length}`)
  }
  const dv = view(bytes)
  const request = dv.getUint32(0, true)
  const flags = dv.getUint32(4, true)
  const size = dv.getUint32(8, true)
  if ((flags & VERSION_MASK) !== VERSION) {
    throw new VhostUserError('EVHOST_BAD_VERSION', `version ${flags & VERSION_MASK}, expected ${VERSION}`, request)
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new VhostUserError('EVHOST_BAD_FLAGS', `unknown flag bits 0x${(flags >>> 0).toString(16)}`, request)
  }
  if (size > MAX_PAYLOAD_SIZE) {
    throw new VhostUserError('EVHOST_PAYLOAD_TOO_LARGE', `payload of ${size} bytes exceeds ${MAX_PAYLOAD_SIZE}`, request)
  }
  return { request, flags, size }
}

/** Writes `h` into the first HEADER_SIZE bytes of `out`. */
export function encodeHeader(h: MessageHeader, out: Uint8Array): void {
  const dv = view(out)
  dv.setUint32(0, h.request, true)
  dv.setUint32(4, h.flags, true)
  dv.setUint32(8, h.size, true)
}

/** Header plus payload in one buffer, ready for one sendmsg (fds travel with the first byte). */
export function encodeMessage(request: number, flags: number, payload: Uint8Array = EMPTY): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length)
  encodeHeader({ request, flags, size: payload.length }, out)
  out.set(payload, HEADER_SIZE)
  return out
}

// ---------------------------------------------------------------------------------------------
// Per-request rules (vhost-user.rst "Front-end message types": request payload and ancillary fds)

/** How many fds a request carries. */
const enum Fds {
  None,
  One,
  /** SET_VRING_KICK/CALL/ERR: one unless the payload has VRING_NOFD_MASK, then none. */
  VringFd,
  /** SET_MEM_TABLE: one per region. */
  PerRegion,
  /** REM_MEM_REG: none SHOULD be sent, one MAY be accepted (and must be closed unused). */
  NoneOrOne,
}

/** Payload size rule: exact size, or [min, max] for variable layouts. */
interface Rule {
  min: number
  max: number
  fds: Fds
}

const exact = (size: number, fds: Fds = Fds.None): Rule => ({ min: size, max: size, fds })

const R = FrontendReq
const rules: ReadonlyMap<number, Rule> = new Map<number, Rule>([
  [R.GET_FEATURES, exact(0)],
  [R.SET_FEATURES, exact(U64_SIZE)],
  [R.SET_OWNER, exact(0)],
  [R.RESET_OWNER, exact(0)],
  // 8 + 32 * nregions, 1..MAX_MEM_REGIONS regions; the exact size is checked against nregions.
  [R.SET_MEM_TABLE, { min: MEM_TABLE_HEADER_SIZE + MEM_REGION_SIZE, max: MEM_TABLE_HEADER_SIZE + MAX_MEM_REGIONS * MEM_REGION_SIZE, fds: Fds.PerRegion }],
  // QEMU sends the 16-byte log description (mmap size, offset) with the log memfd.
  [R.SET_LOG_BASE, exact(LOG_SIZE, Fds.One)],
  [R.SET_LOG_FD, exact(0, Fds.One)],
  [R.SET_VRING_NUM, exact(VRING_STATE_SIZE)],
  [R.SET_VRING_ADDR, exact(VRING_ADDR_SIZE)],
  [R.SET_VRING_BASE, exact(VRING_STATE_SIZE)],
  [R.GET_VRING_BASE, exact(VRING_STATE_SIZE)],
  [R.SET_VRING_KICK, exact(U64_SIZE, Fds.VringFd)],
  [R.SET_VRING_CALL, exact(U64_SIZE, Fds.VringFd)],
  [R.SET_VRING_ERR, exact(U64_SIZE, Fds.VringFd)],
  [R.GET_PROTOCOL_FEATURES, exact(0)],
  [R.SET_PROTOCOL_FEATURES, exact(U64_SIZE)],
  [R.GET_QUEUE_NUM, exact(0)],
  [R.SET_VRING_ENABLE, exact(VRING_STATE_SIZE)],
  [R.SEND_RARP, exact(U64_SIZE)],
  [R.NET_SET_MTU, exact(U64_SIZE)],
  [R.SET_BACKEND_REQ_FD, exact(0, Fds.One)],
  [R.IOTLB_MSG, exact(IOTLB_SIZE)],
  [R.SET_VRING_ENDIAN, exact(VRING_STATE_SIZE)],
  // Config header + 1..MAX_CONFIG_SIZE bytes (a zero-length access is meaningless in a request).
  [R.GET_CONFIG, { min: CONFIG_HEADER_SIZE + 1, max: CONFIG_HEADER_SIZE + MAX_CONFIG_SIZE, fds: Fds.None }],
  [R.SET_CONFIG, { min: CONFIG_HEADER_SIZE + 1, max: CONFIG_HEADER_SIZE + MAX_CONFIG_SIZE, fds: Fds.None }],
  // Crypto sessions are not interpreted by this project: any size within the header limit.
  [R.CREATE_CRYPTO_SESSION, { min: 0, max: MAX_PAYLOAD_SIZE, fds: Fds.None }],
  [R.CLOSE_CRYPTO_SESSION, exact(U64_SIZE)],
  [R.POSTCOPY_ADVISE, exact(0)],
  [R.POSTCOPY_LISTEN, exact(0)],
  [R.POSTCOPY_END, exact(0)],
  [R.GET_INFLIGHT_FD, exact(INFLIGHT_SIZE)],
  [R.SET_INFLIGHT_FD, exact(INFLIGHT_SIZE, Fds.One)],
  [R.GPU_SET_SOCKET, exact(0, Fds.One)],
  [R.RESET_DEVICE, exact(0)],
  [R.VRING_KICK, exact(VRING_STATE_SIZE)],
  [R.GET_MAX_MEM_SLOTS, exact(0)],
  [R.ADD_MEM_REG, exact(SINGLE_MEM_REGION_SIZE, Fds.One)],
  [R.REM_MEM_REG, exact(SINGLE_MEM_REGION_SIZE, Fds.NoneOrOne)],
  [R.SET_STATUS, exact(U64_SIZE)],
  [R.GET_STATUS, exact(0)],
  [R.GET_SHARED_OBJECT, exact(SHARED_OBJECT_SIZE)],
  [R.SET_DEVICE_STATE_FD, exact(DEVICE_STATE_SIZE, Fds.One)],
  [R.CHECK_DEVICE_STATE, exact(0)],
])

/**
 * Checks a front-end request before dispatch: known request code, no REPLY flag, payload size
 * as the request's layout demands (exact, or the variable range of SET_MEM_TABLE and
 * GET/SET_CONFIG, with the inner counts consistent) and the number of fds it must carry
 * (SET_MEM_TABLE: one per region; ADD_MEM_REG, SET_LOG_BASE, SET_LOG_FD, SET_BACKEND_REQ_FD,
 * SET_INFLIGHT_FD, GPU_SET_SOCKET, SET_DEVICE_STATE_FD: one; SET_VRING_KICK/CALL/ERR: one unless
 * the NOFD bit is set, then none; REM_MEM_REG: none or one; all others: none).
 * Field values are checked by the payload decoders. Throws VhostUserError.
 */
export function validateMessage(h: MessageHeader, payload: Uint8Array, fdCount: number): void {
  const rule = rules.get(h.request)
  if (rule === undefined) {
    throw new VhostUserError('EVHOST_UNKNOWN_REQUEST', `unknown request ${h.request}`, h.request)
  }
  if ((h.flags & FLAG_REPLY) !== 0) {
    throw new VhostUserError('EVHOST_BAD_FLAGS', 'REPLY flag set on a request', h.request)
  }
  if (payload.length !== h.size) {
    throw new VhostUserError('EVHOST_BAD_SIZE', `header announces ${h.size} bytes, payload has ${payload.length}`, h.request)
  }
  if (h.size < rule.min || h.size > rule.max) {
    const want = rule.min === rule.max ? `${rule.min}` : `${rule.min}..${rule.max}`
    throw new VhostUserError('EVHOST_BAD_SIZE', `payload of ${h.size} bytes, expected ${want}`, h.request)
  }
  let fdsWanted: number
  switch (rule.fds) {
    case Fds.None:
      fdsWanted = 0
      break
    case Fds.One:
      fdsWanted = 1
      break
    case Fds.VringFd:
      // INVARIANT: size == 8 (exact rule above); bit 8 lives in the low word.
      fdsWanted = (view(payload).getUint32(0, true) & VRING_NOFD_MASK) !== 0 ? 0 : 1
      break
    case Fds.NoneOrOne:
      fdsWanted = fdCount <= 1 ? fdCount : 1
      break
    case Fds.PerRegion: {
      const n = view(payload).getUint32(0, true)
      if (n < 1 || n > MAX_MEM_REGIONS) {
        throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${n} memory regions, expected 1..${MAX_MEM_REGIONS}`, h.request)
      }
      if (h.size !== MEM_TABLE_HEADER_SIZE + n * MEM_REGION_SIZE) {
        throw new VhostUserError('EVHOST_BAD_SIZE', `${h.size} bytes for ${n} regions, expected ${MEM_TABLE_HEADER_SIZE + n * MEM_REGION_SIZE}`, h.request)
      }
      fdsWanted = n
      break
    }
  }
  if (fdCount !== fdsWanted) {
    throw new VhostUserError('EVHOST_BAD_FDS', `${fdCount} fds attached, expected ${fdsWanted}`, h.request)
  }
  if (h.request === R.GET_CONFIG || h.request === R.SET_CONFIG) {
    const size = view(payload).getUint32(4, true)
    if (size !== h.size - CONFIG_HEADER_SIZE) {
      throw new VhostUserError('EVHOST_BAD_SIZE', `config size field ${size}, payload carries ${h.size - CONFIG_HEADER_SIZE}`, h.request)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Payload codecs. Decoders require the exact layout size and reject out-of-range fields with
// EVHOST_BAD_PAYLOAD (or EVHOST_BAD_SIZE for a wrong length); encoders return a fresh buffer.

/** SET_VRING_NUM/BASE, GET_VRING_BASE, SET_VRING_ENABLE, VRING_KICK: two u32. */
export interface VringState {
  index: number
  num: number
}

/** SET_VRING_ADDR. Addresses are front-end virtual addresses (UVAs), log is a GPA. */
export interface VringAddr {
  index: number
  /** Bit VHOST_VRING_F_LOG: log writes to the used ring at logGpa. */
  flags: number
  descUva: number
  usedUva: number
  availUva: number
  logGpa: number
}

/** One guest memory region (SET_MEM_TABLE entry, ADD_MEM_REG/REM_MEM_REG). */
export interface MemRegion {
  gpa: number
  size: number
  uva: number
  mmapOffset: number
}

/** GET_CONFIG/SET_CONFIG payload. */
export interface ConfigPayload {
  offset: number
  size: number
  /** CONFIG_TYPE_FRONTEND or CONFIG_TYPE_MIGRATION. */
  flags: number
  data: Uint8Array
}

/** GET_INFLIGHT_FD/SET_INFLIGHT_FD payload. */
export interface InflightPayload {
  mmapSize: number
  mmapOffset: number
  numQueues: number
  queueSize: number
}

/** SET_LOG_BASE payload (log description). */
export interface LogPayload {
  mmapSize: number
  mmapOffset: number
}

/** SET_VRING_KICK/CALL/ERR payload. */
export interface VringFd {
  index: number
  /** VRING_NOFD_MASK was set: no fd is attached, the ring is polled. */
  noFd: boolean
}

/** A u64 (feature words, acks, GET_QUEUE_NUM, ...). */
export function decodeU64(payload: Uint8Array): bigint {
  need(payload, U64_SIZE, 'u64')
  return view(payload).getBigUint64(0, true)
}

/** Encodes a u64; throws EVHOST_BAD_PAYLOAD when `v` is outside [0, 2^64). */
export function encodeU64(v: bigint): Uint8Array {
  if (v < 0n || v >= 1n << 64n) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${v} does not fit a u64`)
  const out = new Uint8Array(U64_SIZE)
  view(out).setBigUint64(0, v, true)
  return out
}

/** Decodes a vring state description. */
export function decodeVringState(payload: Uint8Array): VringState {
  need(payload, VRING_STATE_SIZE, 'vring state')
  const dv = view(payload)
  return { index: dv.getUint32(0, true), num: dv.getUint32(4, true) }
}

/** Encodes a vring state description. */
export function encodeVringState(s: VringState): Uint8Array {
  const out = new Uint8Array(VRING_STATE_SIZE)
  const dv = view(out)
  dv.setUint32(0, u32(s.index, 'index'), true)
  dv.setUint32(4, u32(s.num, 'num'), true)
  return out
}

/** Decodes a vring address description; any u64 >= 2^53 is EVHOST_BAD_PAYLOAD. */
export function decodeVringAddr(payload: Uint8Array): VringAddr {
  need(payload, VRING_ADDR_SIZE, 'vring address')
  const dv = view(payload)
  return {
    index: dv.getUint32(0, true),
    flags: dv.getUint32(4, true),
    descUva: getU53(dv, 8, 'descriptor address'),
    usedUva: getU53(dv, 16, 'used address'),
    availUva: getU53(dv, 24, 'available address'),
    logGpa: getU53(dv, 32, 'log address'),
  }
}

/** Encodes a vring address description. */
export function encodeVringAddr(a: VringAddr): Uint8Array {
  const out = new Uint8Array(VRING_ADDR_SIZE)
  const dv = view(out)
  dv.setUint32(0, u32(a.index, 'index'), true)
  dv.setUint32(4, u32(a.flags, 'flags'), true)
  setU53(dv, 8, a.descUva, 'descriptor address')
  setU53(dv, 16, a.usedUva, 'used address')
  setU53(dv, 24, a.availUva, 'available address')
  setU53(dv, 32, a.logGpa, 'log address')
  return out
}

/**
 * Decodes SET_MEM_TABLE: u32 nregions, u32 padding, then nregions regions. 0 regions or more
 * than MAX_MEM_REGIONS, a size not exactly 8 + 32 * nregions, or a bad region is rejected.
 */
export function decodeMemTable(payload: Uint8Array): MemRegion[] {
  if (payload.length < MEM_TABLE_HEADER_SIZE) {
    throw new VhostUserError('EVHOST_BAD_SIZE', `memory table needs at least ${MEM_TABLE_HEADER_SIZE} bytes, got ${payload.length}`)
  }
  const dv = view(payload)
  const n = dv.getUint32(0, true)
  if (n < 1 || n > MAX_MEM_REGIONS) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${n} memory regions, expected 1..${MAX_MEM_REGIONS}`)
  }
  need(payload, MEM_TABLE_HEADER_SIZE + n * MEM_REGION_SIZE, 'memory table')
  const regions: MemRegion[] = []
  for (let i = 0; i < n; i++) regions.push(getRegion(dv, MEM_TABLE_HEADER_SIZE + i * MEM_REGION_SIZE))
  return regions
}

/** Encodes SET_MEM_TABLE (1..MAX_MEM_REGIONS regions). */
export function encodeMemTable(regions: readonly MemRegion[]): Uint8Array {
  if (regions.length < 1 || regions.length > MAX_MEM_REGIONS) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${regions.length} memory regions, expected 1..${MAX_MEM_REGIONS}`)
  }
  const out = new Uint8Array(MEM_TABLE_HEADER_SIZE + regions.length * MEM_REGION_SIZE)
  const dv = view(out)
  dv.setUint32(0, regions.length, true)
  regions.forEach((r, i) => setRegion(dv, MEM_TABLE_HEADER_SIZE + i * MEM_REGION_SIZE, r))
  return out
}

/** Decodes ADD_MEM_REG/REM_MEM_REG: u64 padding, then one region. */
export function decodeSingleMemRegion(payload: Uint8Array): MemRegion {
  need(payload, SINGLE_MEM_REGION_SIZE, 'single memory region')
  return getRegion(view(payload), 8)
}

/** Encodes ADD_MEM_REG/REM_MEM_REG. */
export function encodeSingleMemRegion(r: MemRegion): Uint8Array {
  const out = new Uint8Array(SINGLE_MEM_REGION_SIZE)
  setRegion(view(out), 8, r)
  return out
}

/**
 * Decodes GET_CONFIG/SET_CONFIG: offset, size, flags, then `size` bytes; `size` must equal the
 * payload length minus 12, and offset + size must stay within MAX_CONFIG_SIZE. `data` is a copy.
 */
export function decodeConfig(payload: Uint8Array): ConfigPayload {
  if (payload.length < CONFIG_HEADER_SIZE) {
    throw new VhostUserError('EVHOST_BAD_SIZE', `config payload needs at least ${CONFIG_HEADER_SIZE} bytes, got ${payload.length}`)
  }
  const dv = view(payload)
  const offset = dv.getUint32(0, true)
  const size = dv.getUint32(4, true)
  const flags = dv.getUint32(8, true)
  if (size !== payload.length - CONFIG_HEADER_SIZE) {
    throw new VhostUserError('EVHOST_BAD_SIZE', `config size field ${size}, payload carries ${payload.length - CONFIG_HEADER_SIZE}`)
  }
  // offset is a u32 and size <= MAX_PAYLOAD_SIZE here, so the sum is exact in a double.
  if (offset + size > MAX_CONFIG_SIZE) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `config access [${offset}, ${offset + size}) beyond ${MAX_CONFIG_SIZE} bytes`)
  }
  return { offset, size, flags, data: payload.slice(CONFIG_HEADER_SIZE) }
}

/** Encodes GET_CONFIG/SET_CONFIG; the size field is `data.length`. */
export function encodeConfig(c: { offset: number; flags: number; data: Uint8Array }): Uint8Array {
  if (c.offset + c.data.length > MAX_CONFIG_SIZE) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `config access [${c.offset}, ${c.offset + c.data.length}) beyond ${MAX_CONFIG_SIZE} bytes`)
  }
  const out = new Uint8Array(CONFIG_HEADER_SIZE + c.data.length)
  const dv = view(out)
  dv.setUint32(0, u32(c.offset, 'offset'), true)
  dv.setUint32(4, c.data.length, true)
  dv.setUint32(8, u32(c.flags, 'flags'), true)
  out.set(c.data, CONFIG_HEADER_SIZE)
  return out
}

/** Decodes an inflight description (the 4 trailing padding bytes are ignored). */
export function decodeInflight(payload: Uint8Array): InflightPayload {
  need(payload, INFLIGHT_SIZE, 'inflight description')
  const dv = view(payload)
  return {
    mmapSize: getU53(dv, 0, 'inflight mmap size'),
    mmapOffset: getU53(dv, 8, 'inflight mmap offset'),
    numQueues: dv.getUint16(16, true),
    queueSize: dv.getUint16(18, true),
  }
}

/** Encodes an inflight description. */
export function encodeInflight(p: InflightPayload): Uint8Array {
  const out = new Uint8Array(INFLIGHT_SIZE)
  const dv = view(out)
  setU53(dv, 0, p.mmapSize, 'inflight mmap size')
  setU53(dv, 8, p.mmapOffset, 'inflight mmap offset')
  dv.setUint16(16, u16(p.numQueues, 'num queues'), true)
  dv.setUint16(18, u16(p.queueSize, 'queue size'), true)
  return out
}

/** Decodes a log description (SET_LOG_BASE). */
export function decodeLog(payload: Uint8Array): LogPayload {
  need(payload, LOG_SIZE, 'log description')
  const dv = view(payload)
  return { mmapSize: getU53(dv, 0, 'log mmap size'), mmapOffset: getU53(dv, 8, 'log mmap offset') }
}

/** Encodes a log description. */
export function encodeLog(p: LogPayload): Uint8Array {
  const out = new Uint8Array(LOG_SIZE)
  const dv = view(out)
  setU53(dv, 0, p.mmapSize, 'log mmap size')
  setU53(dv, 8, p.mmapOffset, 'log mmap offset')
  return out
}

/** Decodes the SET_VRING_KICK/CALL/ERR u64: index in bits 0-7, NOFD in bit 8, the rest must be 0. */
export function decodeVringFd(payload: Uint8Array): VringFd {
  need(payload, U64_SIZE, 'vring fd')
  const dv = view(payload)
  const lo = dv.getUint32(0, true)
  const hi = dv.getUint32(4, true)
  if (hi !== 0 || (lo & ~(VRING_INDEX_MASK | VRING_NOFD_MASK)) !== 0) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `reserved bits set in vring fd payload 0x${dv.getBigUint64(0, true).toString(16)}`)
  }
  return { index: lo & VRING_INDEX_MASK, noFd: (lo & VRING_NOFD_MASK) !== 0 }
}

/** Encodes the SET_VRING_KICK/CALL/ERR u64. */
export function encodeVringFd(f: VringFd): Uint8Array {
  if (!Number.isInteger(f.index) || f.index < 0 || f.index > VRING_INDEX_MASK) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `vring index ${f.index} does not fit 8 bits`)
  }
  const out = new Uint8Array(U64_SIZE)
  view(out).setUint32(0, f.index | (f.noFd ? VRING_NOFD_MASK : 0), true)
  return out
}

// ---------------------------------------------------------------------------------------------

const EMPTY = new Uint8Array(0)
/** 2^53: u64 fields at or above it cannot be held exactly in a number. */
const TWO_POW_53 = 2 ** 53
const TWO_POW_32 = 2 ** 32

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength)
}

function need(payload: Uint8Array, size: number, what: string): void {
  if (payload.length !== size) {
    throw new VhostUserError('EVHOST_BAD_SIZE', `${what} needs ${size} bytes, got ${payload.length}`)
  }
}

/** Reads a u64 as two u32 halves; >= 2^53 cannot be represented exactly and is rejected. */
function getU53(dv: DataView, off: number, what: string): number {
  const lo = dv.getUint32(off, true)
  const hi = dv.getUint32(off + 4, true)
  if (hi >= TWO_POW_53 / TWO_POW_32) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${what} 0x${dv.getBigUint64(off, true).toString(16)} is not below 2^53`)
  }
  return hi * TWO_POW_32 + lo
}

function setU53(dv: DataView, off: number, v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${what} ${v} is not an integer in [0, 2^53)`)
  dv.setUint32(off, v % TWO_POW_32, true)
  dv.setUint32(off + 4, Math.floor(v / TWO_POW_32), true)
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v >= TWO_POW_32) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${what} ${v} does not fit a u32`)
  return v
}

function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new VhostUserError('EVHOST_BAD_PAYLOAD', `${what} ${v} does not fit a u16`)
  return v
}

/**
 * Reads one region and checks it describes something mappable: a non-zero size, and no end
 * (gpa, uva or mmap offset plus size) beyond 2^53 - 1. Both operands are below 2^53, so a true
 * sum above MAX_SAFE_INTEGER can never compare as <= MAX_SAFE_INTEGER after rounding.
 */
function getRegion(dv: DataView, off: number): MemRegion {
  const r: MemRegion = {
    gpa: getU53(dv, off, 'region guest address'),
    size: getU53(dv, off + 8, 'region size'),
    uva: getU53(dv, off + 16, 'region user address'),
    mmapOffset: getU53(dv, off + 24, 'region mmap offset'),
  }
  if (r.size === 0) throw new VhostUserError('EVHOST_BAD_PAYLOAD', 'memory region of size 0')
  if (r.gpa + r.size > Number.MAX_SAFE_INTEGER || r.uva + r.size > Number.MAX_SAFE_INTEGER || r.mmapOffset + r.size > Number.MAX_SAFE_INTEGER) {
    throw new VhostUserError('EVHOST_BAD_PAYLOAD', `memory region end overflows (gpa 0x${r.gpa.toString(16)}, size 0x${r.size.toString(16)})`)
  }
  return r
}

function setRegion(dv: DataView, off: number, r: MemRegion): void {
  setU53(dv, off, r.gpa, 'region guest address')
  setU53(dv, off + 8, r.size, 'region size')
  setU53(dv, off + 16, r.uva, 'region user address')
  setU53(dv, off + 24, r.mmapOffset, 'region mmap offset')
}
