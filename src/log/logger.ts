/**
 * Structured logs: one line per event on stderr (journald keeps them), logfmt
 * or JSON. Fields whose names suggest secrets are redacted, whatever the caller
 * passes.
 */

export type LogLevel = "error" | "warn" | "info" | "debug";
export type Fields = Record<string, unknown>;

// Field names that carry credentials, whatever the caller passes in them.
// Matched on the lowercased name: "bearerToken", "client_key", "password"...
const SECRET_FIELD =
  /(token|password|passwd|secret|authorization|bearer|credential|private_?key|api_?key|client_?key)/;

export interface LoggerOptions {
  format?: "logfmt" | "json";
  /** --v: info messages with a level above it are dropped; debug needs >= 4. */
  verbosity?: number;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** Clock for timestamps (tests pass a fixed one). */
  now?: () => Date;
}

function logfmtValue(v: unknown): string {
  const s = typeof v === "string"
    ? v
    : v instanceof Error
    ? v.message
    : JSON.stringify(v) ?? "null";
  return /^[A-Za-z0-9_.:\/@+-]+$/.test(s) ? s : JSON.stringify(s);
}

/** "Cannot x: y" plus the cause chain, for one log field. */
export function errorText(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 8; depth++) {
    const msg = cur instanceof Error ? cur.message : String(cur);
    // Wrappers often quote their cause already; say it once.
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(": caused by: ");
}

/** What a reload may change; shared by a logger and every logger made from it with with(). */
export interface LogSettings {
  format: "logfmt" | "json";
  verbosity: number;
}

export class Logger {
  #settings: LogSettings;
  #write: (line: string) => void;
  #now: () => Date;
  #fields: Fields;

  constructor(opts: LoggerOptions = {}, fields: Fields = {}) {
    this.#settings = { format: opts.format ?? "logfmt", verbosity: opts.verbosity ?? 0 };
    const enc = new TextEncoder();
    this.#write = opts.write ?? ((line) => Deno.stderr.writeSync(enc.encode(line + "\n")));
    this.#now = opts.now ?? (() => new Date());
    this.#fields = fields;
  }

  get verbosity(): number {
    return this.#settings.verbosity;
  }

  get format(): "logfmt" | "json" {
    return this.#settings.format;
  }

  /**
   * Changes the format and verbosity (a config reload), for this logger and
   * every logger made from it or that it was made from with with().
   */
  configure(settings: Partial<LogSettings>): void {
    if (settings.format !== undefined) this.#settings.format = settings.format;
    if (settings.verbosity !== undefined) this.#settings.verbosity = settings.verbosity;
  }

  /** A logger that adds these fields to every line. */
  with(fields: Fields): Logger {
    const child = new Logger({ write: this.#write, now: this.#now }, {
      ...this.#fields,
      ...fields,
    });
    child.#settings = this.#settings;
    return child;
  }

  #emit(level: LogLevel, msg: string, fields: Fields): void {
    const all: Fields = { ...this.#fields, ...fields };
    for (const k of Object.keys(all)) {
      if (SECRET_FIELD.test(k.toLowerCase())) all[k] = "[redacted]";
      else if (all[k] instanceof Error) all[k] = errorText(all[k]);
    }
    const ts = this.#now().toISOString();
    if (this.#settings.format === "json") {
      this.#write(JSON.stringify({ ts, level, msg, ...all }));
    } else {
      const kv = Object.entries(all).map(([k, v]) => `${k}=${logfmtValue(v)}`);
      this.#write([`ts=${ts}`, `level=${level}`, `msg=${logfmtValue(msg)}`, ...kv].join(" "));
    }
  }

  error(msg: string, fields: Fields = {}): void {
    this.#emit("error", msg, fields);
  }
  warn(msg: string, fields: Fields = {}): void {
    this.#emit("warn", msg, fields);
  }
  /** v: the verbosity needed to see this line (0: always). */
  info(msg: string, fields: Fields = {}, v = 0): void {
    if (v <= this.#settings.verbosity) this.#emit("info", msg, fields);
  }
  debug(msg: string, fields: Fields = {}): void {
    if (this.#settings.verbosity >= 4) this.#emit("debug", msg, fields);
  }
}
