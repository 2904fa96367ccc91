/**
 * The proxy's own endpoints: /healthz and /livez on healthzBindAddress
 * (default 0.0.0.0:10256), /metrics and /proxyMode on metricsBindAddress
 * (default 127.0.0.1:10249).
 */
import type { KpxMetrics } from "../metrics/mod.ts";
import { type HttpServer, json, listen } from "./http.ts";
import type { ProxyHealth } from "./proxy_health.ts";

export function healthzServer(
  bind: string,
  health: ProxyHealth,
  metrics: KpxMetrics,
  onError: (e: Error) => void,
): HttpServer {
  return listen(bind, (req) => {
    const path = new URL(req.url).pathname;
    if (path !== "/healthz" && path !== "/livez") {
      return new Response("404 page not found\n", { status: 404 });
    }
    const s = health.status();
    // /healthz also fails on a node being deleted, so LB health checks drain it;
    // /livez only says whether the proxy itself is working.
    const ok = path === "/livez" ? s.healthy : s.healthy && s.nodeEligible;
    const code = ok ? 200 : 503;
    (path === "/livez" ? metrics.livezTotal : metrics.healthzTotal).inc({ code: String(code) });
    const body = path === "/livez"
      ? { lastUpdated: s.lastUpdated, currentTime: s.currentTime }
      : { lastUpdated: s.lastUpdated, currentTime: s.currentTime, nodeEligible: s.nodeEligible };
    return json(code, body);
  }, onError);
}

export function metricsServer(
  bind: string,
  metrics: KpxMetrics,
  mode: string,
  onError: (e: Error) => void,
): HttpServer {
  return listen(bind, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/metrics") {
      return new Response(metrics.registry.render(), {
        headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/proxyMode") {
      return new Response(mode, { headers: { "Content-Type": "text/plain" } });
    }
    if (path === "/healthz") {
      return new Response("ok", { headers: { "Content-Type": "text/plain" } });
    }
    return new Response("404 page not found\n", { status: 404 });
  }, onError);
}
