/**
 * healthCheckNodePort servers for externalTrafficPolicy=Local LoadBalancers:
 * the cloud LB asks every node and sends traffic only to nodes answering 200,
 * i.e. nodes with a local ready endpoint. Answers as kube-proxy does (JSON
 * body, X-Load-Balancing-Endpoint-Weight).
 */
import { type HttpServer, json, listen } from "./http.ts";

export interface ServiceHealth {
  namespace: string;
  name: string;
  port: number;
  localEndpoints: number;
}

export class ServiceHealthServers {
  /** port -> server and the service it answers for (updated in place on each sync). */
  #servers = new Map<number, { server: HttpServer; current: { service: ServiceHealth } }>();
  #hosts: string[];
  #proxyHealthy: () => boolean;
  #onError: (e: Error) => void;

  /** hosts: addresses to listen on ("0.0.0.0" and "::" for all). */
  constructor(
    opts: { hosts?: string[]; proxyHealthy: () => boolean; onError: (e: Error) => void },
  ) {
    this.#hosts = opts.hosts ?? ["[::]"];
    this.#proxyHealthy = opts.proxyHealthy;
    this.#onError = opts.onError;
  }

  get ports(): number[] {
    return [...this.#servers.keys()].sort((a, b) => a - b);
  }

  /** Opens, updates and closes servers to match the services given. */
  async sync(services: readonly ServiceHealth[]): Promise<void> {
    const want = new Map(services.map((s) => [s.port, s]));
    for (const [port, entry] of [...this.#servers]) {
      if (!want.has(port)) {
        this.#servers.delete(port);
        await entry.server.stop();
      }
    }
    for (const [port, svc] of want) {
      const entry = this.#servers.get(port);
      if (entry) {
        entry.current.service = svc;
        continue;
      }
      const current = { service: svc };
      try {
        const server = listen(
          `${this.#hosts[0]}:${port}`,
          () => this.#answer(current.service),
          this.#onError,
        );
        this.#servers.set(port, { server, current });
      } catch (e) {
        this.#onError(
          new Error(
            `Cannot serve the health check of ${svc.namespace}/${svc.name} on port ${port}`,
            { cause: e },
          ),
        );
      }
    }
  }

  #answer(s: ServiceHealth): Response {
    const healthy = this.#proxyHealthy();
    const ok = s.localEndpoints > 0 && healthy;
    return json(ok ? 200 : 503, {
      service: { namespace: s.namespace, name: s.name },
      localEndpoints: s.localEndpoints,
      serviceProxyHealthy: healthy,
    }, { "X-Load-Balancing-Endpoint-Weight": String(s.localEndpoints) });
  }

  async stop(): Promise<void> {
    for (const e of this.#servers.values()) await e.server.stop();
    this.#servers.clear();
  }
}
