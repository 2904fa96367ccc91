/** The stream fix lives with the daemon's API source; tests load the same one. */
export * from "../../src/source/deno_stream_fix.ts";
