// The planner ABI. Bump ABI_VERSION whenever the input or output layout changes:
// the host refuses a module whose version differs from its own.
export const ABI_VERSION: u32 = 3;
// "KPXP" little-endian: first word of every input buffer.
export const INPUT_MAGIC: u32 = 0x5058504b;
// Version of the nftables layout (names and types of the fixed objects). It is
// part of the generation marker's name, so a kpx with another layout replaces
// the table instead of trying to reuse objects of the wrong type.
export const LAYOUT_VERSION: u32 = 1;

export const MODE_FULL: u8 = 0;
export const MODE_DELTA: u8 = 1;
// ABI 3: an nftables full sync comes in parts (each a slice of the services)
// and a head (the table, maps, sets and fixed chains), each in a fresh
// instance, so that one part's garbage is all the module's memory holds.
export const MODE_FULL_PART: u8 = 2;
export const MODE_FULL_HEAD: u8 = 3;

export const PROTO_TCP: u8 = 1;
export const PROTO_UDP: u8 = 2;
export const PROTO_SCTP: u8 = 3;

export const SVC_ETP_LOCAL: u8 = 1;
export const SVC_ITP_LOCAL: u8 = 2;

export const EP_READY: u8 = 1;
export const EP_SERVING: u8 = 2;
export const EP_TERMINATING: u8 = 4;

export const LOCAL_NONE: u8 = 0;
export const LOCAL_CIDR: u8 = 1;
export const LOCAL_BRIDGE: u8 = 2;
export const LOCAL_PREFIX: u8 = 3;

export const DELTA_HAS_OLD: u8 = 1;
export const DELTA_HAS_NEW: u8 = 2;
