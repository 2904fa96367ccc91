import { deepEqual, equal, ok } from "node:assert/strict";
import { errorText, Logger } from "./logger.ts";

function capture(format: "logfmt" | "json" = "logfmt", verbosity = 0) {
  const lines: string[] = [];
  const log = new Logger({
    format,
    verbosity,
    write: (l) => lines.push(l),
    now: () => new Date(0),
  });
  return { lines, log };
}

Deno.test("Logger writes one logfmt line per event, quoting values with spaces", () => {
  const { lines, log } = capture();
  log.warn("Cannot use Service default/x: bad port", { object: "Service default/x", count: 2 });
  deepEqual(lines, [
    'ts=1970-01-01T00:00:00.000Z level=warn msg="Cannot use Service default/x: bad port" object="Service default/x" count=2',
  ]);
});

Deno.test("Logger never writes credentials, whatever field they come in", () => {
  const { lines, log } = capture("json");
  log.info("connecting", {
    token: "abc",
    bearerToken: "def",
    client_key: "ghi",
    password: "x",
    sysctl: "net.netfilter.nf_conntrack_max",
    key: "net.x",
  });
  const o = JSON.parse(lines[0]!);
  for (const f of ["token", "bearerToken", "client_key", "password"]) equal(o[f], "[redacted]", f);
  equal(o.sysctl, "net.netfilter.nf_conntrack_max");
  equal(o.key, "net.x");
  ok(!lines[0]!.includes("abc") && !lines[0]!.includes("def") && !lines[0]!.includes("ghi"));
});

Deno.test("Logger drops info above the verbosity and debug below 4", () => {
  const { lines, log } = capture("logfmt", 2);
  log.info("a", {}, 2);
  log.info("b", {}, 3);
  log.debug("c");
  equal(lines.length, 1);
});

Deno.test("errorText() follows the cause chain without repeating quoted causes", () => {
  const inner = new Error("permission denied");
  const e = new Error("Cannot read x: permission denied", { cause: inner });
  equal(errorText(e), "Cannot read x: permission denied");
  const e2 = new Error("Cannot sync", { cause: new Error("Cannot apply", { cause: inner }) });
  equal(errorText(e2), "Cannot sync: caused by: Cannot apply: caused by: permission denied");
});

Deno.test("Logger.configure() changes format and verbosity for the logger and those made with with()", () => {
  const { lines, log } = capture("logfmt", 0);
  const child = log.with({ component: "source" });
  child.info("hidden", {}, 2);
  equal(lines.length, 0);
  log.configure({ format: "json", verbosity: 2 });
  child.info("shown", {}, 2);
  log.info("also json");
  equal(log.format, "json");
  equal(child.verbosity, 2);
  deepEqual(lines.map((l) => JSON.parse(l)), [
    { ts: "1970-01-01T00:00:00.000Z", level: "info", msg: "shown", component: "source" },
    { ts: "1970-01-01T00:00:00.000Z", level: "info", msg: "also json" },
  ]);
  child.configure({ verbosity: 0 });
  log.info("hidden again", {}, 1);
  equal(lines.length, 2, "a child's configure() reaches its parent too");
});
