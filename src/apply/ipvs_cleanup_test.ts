import { deepEqual, equal } from "node:assert/strict";
import { cleanupIPVS } from "./ipvs_cleanup.ts";
import { FakeIpvs } from "./ipvs_fake.ts";
import { FakeLink } from "./ipvs_link.ts";

Deno.test("cleanupIPVS() deletes virtual services on kube-ipvs0 and node ports on node addresses, then kube-ipvs0", async () => {
  const ipvs = new FakeIpvs();
  await ipvs.restore([
    "-A -t 10.96.0.10:80 -s rr",
    "-a -t 10.96.0.10:80 -r 10.244.0.5:8080 -m -w 1",
    "-A -u 10.96.0.10:53 -s rr",
    "-A -t 192.0.2.10:30080 -s rr",
    "-A -t 192.0.2.10:22 -s rr", // a node address, but no node port: not kpx's
    "-A -t 198.51.100.7:443 -s wlc", // someone else's
  ]);
  const link = new FakeLink();
  await link.ensure();
  await link.change(["10.96.0.10"], []);
  const r = await cleanupIPVS(ipvs, link, ["192.0.2.10", "127.0.0.1"]);
  deepEqual(r.services.sort(), ["-t 10.96.0.10:80", "-t 192.0.2.10:30080", "-u 10.96.0.10:53"]);
  deepEqual([...ipvs.table.keys()].sort(), ["-t 192.0.2.10:22", "-t 198.51.100.7:443"]);
  equal(r.link, true);
  equal(link.exists, false);
  deepEqual(r.errors, []);
});
