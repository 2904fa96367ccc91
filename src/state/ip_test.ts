import { deepEqual as assertEquals } from "node:assert/strict";
import { cidrContains, parseCIDR, parseIP } from "./ip.ts";

Deno.test("parseIP() canonicalises IPv6 per RFC 5952", () => {
  assertEquals(parseIP("2001:DB8:0:0:0:0:0:1")?.text, "2001:db8::1");
  assertEquals(parseIP("fd00:0:0:1:0:0:0:0")?.text, "fd00:0:0:1::");
  assertEquals(parseIP("0:0:1:0:0:1:0:0")?.text, "::1:0:0:1:0:0");
  assertEquals(parseIP("::ffff:10.0.0.1")?.text, "::ffff:10.0.0.1");
  assertEquals(parseIP("::")?.text, "::");
  assertEquals(parseIP("1:2:3:4:5:6:7:8")?.text, "1:2:3:4:5:6:7:8");
});

Deno.test("parseIP() rejects malformed addresses", () => {
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.256",
      "01.2.3.4",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "abc",
      "fe80::1%eth0",
      "1.2.3.4/32",
    ]
  ) {
    assertEquals(parseIP(bad), null, bad);
  }
});

Deno.test("parseCIDR() clears host bits and checks the prefix length", () => {
  assertEquals(parseCIDR("10.1.2.3/8")?.text, "10.0.0.0/8");
  assertEquals(parseCIDR("fd00::1/64")?.text, "fd00::/64");
  assertEquals(parseCIDR("10.0.0.0/33"), null);
  assertEquals(parseCIDR("10.0.0.0"), null);
});

Deno.test("cidrContains() respects family and prefix", () => {
  const c = parseCIDR("192.0.2.0/24")!;
  assertEquals(cidrContains(c, parseIP("192.0.2.77")!), true);
  assertEquals(cidrContains(c, parseIP("192.0.3.1")!), false);
  assertEquals(cidrContains(c, parseIP("::1")!), false);
  assertEquals(cidrContains(parseCIDR("0.0.0.0/0")!, parseIP("8.8.8.8")!), true);
});
