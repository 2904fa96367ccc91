/**
 * Echo server for the testbed: answers every TCP connection and every UDP datagram with one
 * line `<name> <peer address>`, where the peer address is the client address as this server
 * sees it (so tests can tell masquerade from client-IP preservation).
 *
 *   ip netns exec NS deno run --allow-net echo_server.ts --name pod0a --tcp 80,8080 --udp 80,8080
 *
 * Binds "::" with IPV6_V6ONLY off (the netns default, net.ipv6.bindv6only=0), so one socket per
 * port serves IPv4 and IPv6; IPv4 peers appear as ::ffff:a.b.c.d and are unmapped here.
 * Prints one line `{"ready":true,...}` on stdout once every port is bound, and exits when its
 * stdin closes, so a crashed parent never leaves a server behind.
 * @module
 */

import dgram from "node:dgram";

export interface EchoOptions {
  name: string;
  tcpPorts: number[];
  udpPorts: number[];
}

function parsePorts(flag: string, value: string | undefined): number[] {
  if (value === undefined || value === "") return [];
  return value.split(",").map((text) => {
    const port = Number(text);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new RangeError(`Cannot use ${flag} port "${text}": not in 1..65535`);
    }
    return port;
  });
}

/** Parses `--name N [--tcp P,..] [--udp P,..]`. */
export function parseEchoArgs(args: string[]): EchoOptions {
  const values = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i];
    const value = args[i + 1];
    if (flag === undefined || !["--name", "--tcp", "--udp"].includes(flag) || value === undefined) {
      throw new TypeError(
        `Cannot parse arguments ${
          JSON.stringify(args)
        }: expected --name N [--tcp P,..] [--udp P,..]`,
      );
    }
    values.set(flag, value);
  }
  const name = values.get("--name");
  if (name === undefined || /\s/.test(name) || name === "") {
    throw new TypeError("Cannot start echo server: --name must be one word");
  }
  return {
    name,
    tcpPorts: parsePorts("--tcp", values.get("--tcp")),
    udpPorts: parsePorts("--udp", values.get("--udp")),
  };
}

function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

function serveTcp(name: string, port: number): Deno.Listener {
  const listener = Deno.listen({ hostname: "::", port });
  const encoder = new TextEncoder();
  (async () => {
    for await (const conn of listener) {
      const peer = unmapIPv4((conn.remoteAddr as Deno.NetAddr).hostname);
      conn.write(encoder.encode(`${name} ${peer}\n`))
        .catch(() => {/* the client went away first: nothing to answer */})
        .finally(() => conn.close());
    }
  })().catch((error) => {
    // Closing the listener ends the loop with BadResource; anything else is worth a line.
    if (!(error instanceof Deno.errors.BadResource)) {
      console.error(`echo ${name} tcp/${port}: ${error}`);
    }
  });
  return listener;
}

function serveUdp(name: string, port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: "udp6", ipv6Only: false });
  socket.on("message", (_message, remote) => {
    socket.send(`${name} ${unmapIPv4(remote.address)}\n`, remote.port, remote.address);
  });
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, "::", () => {
      socket.off("error", reject);
      // A failed reply (e.g. ICMP error) must not stop the server.
      socket.on("error", (error) => console.error(`echo ${name} udp/${port}: ${error.message}`));
      resolve(socket);
    });
  });
}

/** Serves every port until the returned function is called. Resolves once all are bound. */
export async function serveEcho(options: EchoOptions): Promise<() => void> {
  const listeners = options.tcpPorts.map((port) => serveTcp(options.name, port));
  const sockets = await Promise.all(options.udpPorts.map((port) => serveUdp(options.name, port)));
  return () => {
    for (const listener of listeners) listener.close();
    for (const socket of sockets) socket.close();
  };
}

if (import.meta.main) {
  const options = parseEchoArgs(Deno.args);
  await serveEcho(options);
  const ready = { ready: true, name: options.name, tcp: options.tcpPorts, udp: options.udpPorts };
  console.log(JSON.stringify(ready));
  // Exit when the parent closes our stdin (or dies): never outlive the testbed.
  await Deno.stdin.readable.pipeTo(new WritableStream());
  Deno.exit(0);
}
