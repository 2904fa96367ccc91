export { type HealthStatus, ProxyHealth } from "./proxy_health.ts";
export { type HttpServer, listen, parseBindAddress } from "./http.ts";
export { healthzServer, metricsServer } from "./status_servers.ts";
export { type ServiceHealth, ServiceHealthServers } from "./service_health.ts";
