/**
 * SCTP INIT packets built by hand, for probes over a raw IP socket: this kernel may have no
 * SCTP sockets at all, while conntrack and nftables still track and NAT SCTP. An INIT is
 * enough for conntrack to create (and kpx's rules to DNAT) an association; no reply is needed.
 * @module
 */

/** IPPROTO_SCTP. */
export const SCTP_PROTOCOL = 132;

const INIT_CHUNK = 1;
const ABORT_CHUNK = 6;
const COMMON_HEADER_BYTES = 12;
const INIT_CHUNK_BYTES = 20;

/** CRC32c (Castagnoli, reflected polynomial 0x82F63B78), table-driven. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32c of `bytes` (RFC 3720 B.4; SCTP's checksum, RFC 9260 appendix A). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export interface SctpInitOptions {
  sourcePort: number;
  destinationPort: number;
  /** The association's initiate tag: non-zero (RFC 9260 3.3.2). */
  initiateTag: number;
  initialTsn: number;
}

/**
 * Common header (verification tag 0, as an INIT requires) and one INIT chunk without
 * parameters. The checksum is stored as Linux does (sctp_compute_cksum: little-endian).
 */
export function sctpInitPacket(options: SctpInitOptions): Uint8Array {
  if (options.initiateTag === 0) {
    throw new RangeError("Cannot build an SCTP INIT: the initiate tag must not be 0");
  }
  const packet = new Uint8Array(COMMON_HEADER_BYTES + INIT_CHUNK_BYTES);
  const view = new DataView(packet.buffer);
  view.setUint16(0, options.sourcePort);
  view.setUint16(2, options.destinationPort);
  view.setUint32(4, 0); // verification tag
  view.setUint32(8, 0); // checksum, filled in below
  view.setUint8(12, INIT_CHUNK);
  view.setUint8(13, 0); // flags
  view.setUint16(14, INIT_CHUNK_BYTES);
  view.setUint32(16, options.initiateTag >>> 0);
  view.setUint32(20, 65535); // advertised receiver window credit
  view.setUint16(24, 10); // outbound streams
  view.setUint16(26, 10); // maximum inbound streams
  view.setUint32(28, options.initialTsn >>> 0);
  view.setUint32(8, crc32c(packet), true);
  return packet;
}

/** First chunk type of an SCTP packet (without IP header), or undefined if too short. */
export function firstChunkType(packet: Uint8Array): number | undefined {
  return packet.length > COMMON_HEADER_BYTES ? packet[COMMON_HEADER_BYTES] : undefined;
}

export function isAbort(packet: Uint8Array): boolean {
  return firstChunkType(packet) === ABORT_CHUNK;
}
