// Shared endpoint-pick chains. An endpoint list of N entries is held as map
// elements (slot i -> address, port); the pick chain for N draws i uniformly
// and jumps to the slot chain for i, which DNATs through the maps. So chains
// exist per distinct list length and per slot, never per service or endpoint,
// and a list change is only element updates.
import { ChainDef } from "./layout";
import {
  concat,
  daddr,
  DPORT,
  goto,
  L4PROTO,
  markMasquerade,
  match,
  natFamily,
  nfproto,
  saddr,
  setRef,
  slotConst,
} from "./expr";
import {
  M_NP_ADDRS,
  M_NP_HAIRPIN,
  M_NP_PORTS,
  M_VIP_ADDRS,
  M_VIP_HAIRPIN,
  M_VIP_PORTS,
  mapName,
} from "./layout";
import { ANY_SLOT, isNodePortPath, PATH_NAMES, slotChain, slotIndex } from "./names";

export function slotChainDef(path: i32, uniform: bool, slot: i32, masqMark: u32): ChainDef {
  const c = new ChainDef(slotChain(path, uniform, slot), "");
  const np = isNodePortPath(path);
  const idx = slotIndex(path, <u32> slot);
  // A list whose endpoints share one port keeps that port once, under ANY_SLOT.
  const portIdx = uniform ? slotIndex(path, ANY_SLOT) : idx;
  for (let f = 0; f < 2; f++) {
    const v6 = f == 1;
    const keyParts: string[] = np ? [L4PROTO, DPORT] : [daddr(v6), L4PROTO, DPORT];
    const key = concat(keyParts.concat([slotConst(idx)]));
    const portKey = concat(keyParts.concat([slotConst(portIdx)]));
    // Node-port keys contain no IP header field, so nft adds no family
    // dependency by itself: guard the family explicitly.
    const guard: string[] = np ? [nfproto(v6)] : [];
    // Hairpin: a pod reaching itself through its service must be masqueraded,
    // or it would answer itself directly and bypass the reverse NAT. The set
    // holds (endpoint . key . slot) for endpoints on this node.
    const hairpinKey = concat([saddr(v6)].concat(keyParts).concat([slotConst(idx)]));
    c.rule(guard.concat([
      match("==", hairpinKey, setRef(mapName(np ? M_NP_HAIRPIN : M_VIP_HAIRPIN, v6))),
      markMasquerade(masqMark),
    ]));
    c.rule(guard.concat([
      '{"dnat":{"family":"' + natFamily(v6) + '","addr":{"map":{"key":' + key + ',"data":' +
      setRef(mapName(np ? M_NP_ADDRS : M_VIP_ADDRS, v6)) + '}},"port":{"map":{"key":' + portKey +
      ',"data":' + setRef(mapName(np ? M_NP_PORTS : M_VIP_PORTS, v6)) + "}}}}",
    ]));
  }
  return c;
}

export function pickChainDef(name: string, path: i32, uniform: bool, n: i32): ChainDef {
  // numgen in an anonymous verdict map: the draw happens once per new
  // connection (NAT chains only see a connection's first packet).
  let elems = "";
  for (let i = 0; i < n; i++) {
    if (i > 0) elems += ",";
    elems += "[" + i.toString() + "," + goto(slotChain(path, uniform, i)) + "]";
  }
  return new ChainDef(name, "").rule([
    '{"vmap":{"key":{"numgen":{"mode":"random","mod":' + n.toString() +
    ',"offset":0}},"data":{"set":[' + elems + "]}}}",
  ]);
}

/** Rebuilds a shared chain from its name (names encode everything). */
export function sharedChainDef(name: string, masqMark: u32): ChainDef {
  // name: "slot-<path>-<u|m>-<i>" or "pick-<path>-<u|m>-<n>"
  const isSlot = name.startsWith("slot-");
  const rest = name.substring(5);
  const lastDash = rest.lastIndexOf("-");
  const num = I32.parseInt(rest.substring(lastDash + 1));
  const uniform = rest.charAt(lastDash - 1) == "u";
  const pathName = rest.substring(0, lastDash - 2);
  let path = 0;
  for (let i = 0; i < PATH_NAMES.length; i++) if (PATH_NAMES[i] == pathName) path = i;
  return isSlot
    ? slotChainDef(path, uniform, num, masqMark)
    : pickChainDef(name, path, uniform, num);
}
