/** Small HTTP servers on a host:port; stop() closes them. */

export type Handler = (req: Request) => Response | Promise<Response>;

export interface HttpServer {
  addr: { hostname: string; port: number };
  stop(): Promise<void>;
}

/** "0.0.0.0:10256", "[::]:10249", "127.0.0.1:0" -> hostname and port. */
export function parseBindAddress(addr: string): { hostname: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`Cannot listen on ${JSON.stringify(addr)}: not host:port`);
  return { hostname: m[1] || "0.0.0.0", port: Number(m[2]) };
}

export function listen(bind: string, handler: Handler, onError: (e: Error) => void): HttpServer {
  const { hostname, port } = parseBindAddress(bind);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      onListen: () => {},
      onError: (e) => {
        onError(e as Error);
        return new Response("internal error", { status: 500 });
      },
    }, handler);
  } catch (e) {
    throw new Error(`Cannot listen on ${bind}: ${(e as Error).message}`, { cause: e });
  }
  return {
    addr: { hostname: server.addr.hostname, port: server.addr.port },
    stop: async () => {
      await server.shutdown();
    },
  };
}

export function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "Content-Type": "application/json",
      "X-Content-Type-Options": "nosniff",
      ...headers,
    },
  });
}
