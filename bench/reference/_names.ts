/**
 * kube-proxy's derived names: the base32 of a SHA-256 over the service port
 * (and endpoint) name, truncated. Both modes use it: nftables as an 8-char
 * prefix of a readable name, iptables as the whole 16-char suffix of
 * KUBE-SVC-/KUBE-SEP- (iptables chain names are limited to 28 characters).
 */
import { createHash } from "node:crypto";
import type { Endpoint, Service, ServicePort } from "../../src/state/mod.ts";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding (only prefixes of it are ever used). */
export function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    // Keep only the bits not yet written, so `value` never overflows.
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The first `chars` characters of base32(sha256(text)), as kube-proxy computes them. */
export function hashPrefix(text: string, chars: number): string {
  return base32(createHash("sha256").update(text).digest()).slice(0, chars);
}

/** "namespace/name:port" (ServicePortName.String(); no ":" for an unnamed port). */
export function servicePortName(svc: Service, port: ServicePort): string {
  return `${svc.namespace}/${svc.name}${port.name ? `:${port.name}` : ""}`;
}

/** "ip:port" (BaseEndpointInfo.String(), IPv6 bracketed as net.JoinHostPort does). */
export function endpointString(ep: Endpoint): string {
  return ep.address.includes(":") ? `[${ep.address}]:${ep.port}` : `${ep.address}:${ep.port}`;
}

/** Endpoints kube-proxy programs for the Cluster policy: ready ones. */
export function readyEndpoints(port: ServicePort): Endpoint[] {
  return port.endpoints.filter((e) => e.ready);
}

export function protocolName(port: ServicePort): string {
  return port.protocol.toLowerCase();
}
