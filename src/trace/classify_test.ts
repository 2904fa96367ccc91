import { deepEqual, equal, throws } from "node:assert/strict";
import { parseConntrackLine } from "./conntrack.ts";
import { classifyProbe, type ProbeOutcome, summarize } from "./classify.ts";
import type { ProbeResult } from "./probe_types.ts";

const TIMEOUT: ProbeResult = { ok: false, failure: "timeout", detail: "no answer", elapsedMs: 250 };
const REFUSED: ProbeResult = {
  ok: false,
  failure: "refused",
  detail: "ECONNREFUSED",
  elapsedMs: 1,
};

Deno.test("classifyProbe() reads DNAT and masquerade from conntrack's reply tuple", () => {
  const entry = parseConntrackLine(
    "tcp 6 119 SYN_SENT src=198.51.100.7 dst=10.96.0.10 sport=20001 dport=80 [UNREPLIED] " +
      "src=10.244.1.5 dst=192.0.2.10 sport=8080 dport=41157 mark=0 use=1",
  );
  const outcome = classifyProbe({
    sourcePort: 20001,
    result: TIMEOUT,
    seen: true,
    conntrack: entry,
  });
  equal(outcome.verdict, "dnat");
  equal(outcome.endpoint, "10.244.1.5:8080");
  equal(outcome.masquerade, true);
  const v6 = parseConntrackLine(
    "ipv6 10 tcp 6 119 SYN_SENT src=fd00:10:244::7 dst=fd00:10:96::10 sport=20001 dport=80 " +
      "[UNREPLIED] src=fd00:10:244:1::5 dst=fd00:10:244::7 sport=8080 dport=20001 mark=0 use=1",
  );
  const plain = classifyProbe({ sourcePort: 20001, result: TIMEOUT, seen: true, conntrack: v6 });
  deepEqual([plain.endpoint, plain.masquerade], ["[fd00:10:244:1::5]:8080", false]);
});

Deno.test("classifyProbe(): seen without DNAT is accept, refused unseen reject, else drop", () => {
  const untouched = parseConntrackLine(
    "udp 17 29 src=10.244.0.7 dst=198.51.100.9 sport=20001 dport=53 [UNREPLIED] " +
      "src=198.51.100.9 dst=10.244.0.7 sport=53 dport=20001 mark=0 use=1",
  );
  const probe = { sourcePort: 20001 };
  equal(
    classifyProbe({ ...probe, result: TIMEOUT, seen: true, conntrack: untouched }).verdict,
    "accept",
  );
  equal(
    classifyProbe({ ...probe, result: REFUSED, seen: true, conntrack: undefined }).verdict,
    "accept",
  );
  equal(
    classifyProbe({ ...probe, result: REFUSED, seen: false, conntrack: undefined }).verdict,
    "reject",
  );
  equal(
    classifyProbe({ ...probe, result: TIMEOUT, seen: false, conntrack: undefined }).verdict,
    "drop",
  );
  const eperm: ProbeResult = { ok: false, failure: "other", detail: "EPERM", elapsedMs: 250 };
  equal(
    classifyProbe({ ...probe, result: eperm, seen: false, conntrack: undefined }).verdict,
    "drop",
  );
});

function outcome(verdict: ProbeOutcome["verdict"], endpoint?: string): ProbeOutcome {
  return {
    sourcePort: 1,
    verdict,
    masquerade: false,
    seen: verdict !== "drop",
    answer: "timeout",
    detail: "",
    ...(endpoint === undefined ? {} : { endpoint }),
  };
}

Deno.test("summarize() reports the majority verdict and the whole breakdown", () => {
  const summary = summarize([
    outcome("dnat", "10.244.0.5:8080"),
    outcome("dnat", "10.244.1.5:8080"),
    outcome("dnat", "10.244.0.5:8080"),
    outcome("drop"),
  ]);
  equal(summary.verdict, "dnat");
  deepEqual(summary.breakdown, { dnat: 3, drop: 1 });
  deepEqual(summary.endpoints, ["10.244.0.5:8080", "10.244.1.5:8080"]);
  deepEqual(summary.hits, { "10.244.0.5:8080": 2, "10.244.1.5:8080": 1 });
  equal(summary.probes, 4);
  // Ties go to the verdict listed first in VERDICTS (dnat, reject, drop, accept).
  equal(summarize([outcome("drop"), outcome("reject")]).verdict, "reject");
  throws(() => summarize([]), RangeError);
});
