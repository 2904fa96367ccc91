/**
 * A throwaway CA and a server certificate for 127.0.0.1 and localhost, made
 * with the openssl CLI (Debian's openssl package; no network needed). P-256
 * keys: generating them takes milliseconds, and both rustls (Deno.serve) and
 * Deno's node:tls (client-node's undici) accept them.
 * @module
 */

/** PEM texts of a test CA and of a server certificate it signed. */
export interface TlsMaterial {
  /** The CA certificate: what a kubeconfig's certificate-authority-data carries. */
  caPem: string;
  /** The server certificate (SAN IP:127.0.0.1, DNS:localhost). */
  certPem: string;
  /** The server's private key (PKCS#8). */
  keyPem: string;
}

// webpki (rustls) is strict: the CA must say CA:TRUE, the leaf must not, and
// the leaf needs a subjectAltName (the CN is never looked at).
const CA_EXTENSIONS = [
  "-addext",
  "basicConstraints=critical,CA:TRUE",
  "-addext",
  "keyUsage=critical,keyCertSign,cRLSign",
];
const SERVER_EXTENSIONS = [
  "subjectAltName=IP:127.0.0.1,DNS:localhost",
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature",
  "extendedKeyUsage=serverAuth",
].join("\n");
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function openssl(dir: string, args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
  } catch (e) {
    throw new Error(`Cannot run openssl ${args[0]}: is Debian's openssl installed?`, { cause: e });
  }
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`Cannot make test certificates: openssl ${args[0]} failed: ${stderr}`);
  }
}

/** Makes a fresh CA and a server certificate valid for two days, in a temp dir it removes. */
export async function generateTlsMaterial(): Promise<TlsMaterial> {
  const dir = await Deno.makeTempDir({ prefix: "kpx-api-tls-" });
  try {
    await openssl(dir, [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=kpx test CA",
      ...CA_EXTENSIONS,
    ]);
    await openssl(dir, [
      "req",
      ...EC_KEY,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    ]);
    await Deno.writeTextFile(`${dir}/server.ext`, SERVER_EXTENSIONS + "\n");
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ]);
    const [caPem, certPem, keyPem] = await Promise.all(
      ["ca.pem", "server.pem", "server.key"].map((f) => Deno.readTextFile(`${dir}/${f}`)),
    ) as [string, string, string];
    return { caPem, certPem, keyPem };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
