// The planner module's exports. The host writes the encoded input into the
// buffer from allocInput(), calls plan(), and reads the output at outputPtr().
// Built with the stub runtime: memory is never freed, so the host instantiates
// a fresh module per call, which also guarantees that no state survives from
// one plan to the next.
import { ABI_VERSION, LAYOUT_VERSION, MODE_FULL } from "./abi";
import { readInput } from "./model";
import { planDelta, planFull, PlanResult } from "./batch";
import { ByteWriter } from "./writer";

let input: Uint8Array = new Uint8Array(0);
let output: ByteWriter = new ByteWriter(16);

export function abiVersion(): u32 {
  return ABI_VERSION;
}

export function layoutVersion(): u32 {
  return LAYOUT_VERSION;
}

export function allocInput(len: u32): usize {
  input = new Uint8Array(<i32>len);
  return input.dataStart;
}

function u32le(w: ByteWriter, v: u32): void {
  w.byte(<i32>(v & 0xff)).byte(<i32>((v >> 8) & 0xff)).byte(<i32>((v >> 16) & 0xff))
    .byte(<i32>(v >> 24));
}

function strs(w: ByteWriter, list: string[]): void {
  u32le(w, <u32>list.length);
  const tmp = new ByteWriter(64);
  for (let i = 0; i < list.length; i++) {
    tmp.reset();
    tmp.str(list[i]);
    u32le(w, <u32>tmp.len);
    w.append(tmp);
  }
}

/** Plans the input; returns the output length. Output layout: u32 batch
 *  length, batch bytes (UTF-8 JSON), then three string lists (u32 count, each
 *  u32 length + UTF-8): objects added, objects removed, warnings. */
export function plan(): u32 {
  const parsed = readInput(input.dataStart, <usize>input.length);
  const res: PlanResult = parsed.mode == MODE_FULL ? planFull(parsed) : planDelta(parsed);
  output = new ByteWriter(res.batch.len + 1024);
  u32le(output, <u32>res.batch.len);
  output.append(res.batch);
  strs(output, res.added);
  strs(output, res.removed);
  strs(output, res.warnings);
  return <u32>output.len;
}

export function outputPtr(): usize {
  return output.buf.dataStart;
}
