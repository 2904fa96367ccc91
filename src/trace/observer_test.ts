import { deepEqual, ok } from "node:assert/strict";
import { observerRuleset, parseSeenPorts, probeMatch } from "./observer.ts";

Deno.test("probeMatch() selects the probes by family, source, protocol and port range", () => {
  deepEqual(
    probeMatch({ source: "fd00::7", protocol: "sctp", firstPort: 20000, lastPort: 20031 }),
    "ip6 saddr fd00::7 meta l4proto sctp th sport 20000-20031",
  );
});

Deno.test("observerRuleset() traces before kpx's chains and records after its filters", () => {
  const text = observerRuleset({
    source: "10.244.0.7",
    protocol: "udp",
    firstPort: 1,
    lastPort: 2,
  });
  ok(text.startsWith("table inet kpxtrace {"), text);
  ok(/hook prerouting priority -400;[^}]*nftrace set 1/.test(text), text);
  for (const hook of ["input", "forward", "output"]) {
    ok(new RegExp(`hook ${hook} priority 100;[^}]*add @seen \\{ th sport \\}`).test(text), text);
  }
});

Deno.test("parseSeenPorts() reads plain and detailed set elements", () => {
  const listing = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6" } },
      { set: { name: "seen", elem: [20001, { elem: { val: 20005, expires: 3 } }] } },
    ],
  });
  deepEqual([...parseSeenPorts(listing)].sort(), [20001, 20005]);
  deepEqual(parseSeenPorts(JSON.stringify({ nftables: [{ set: { name: "seen" } }] })).size, 0);
});
