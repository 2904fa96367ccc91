// The planner module's exports. The host writes the encoded input into the
// buffer from allocInput(), calls plan(), and reads the output at outputPtr().
// Built with the stub runtime: memory is never freed, so the host instantiates
// a fresh module per call (on memory it provides: a full sync's parts reuse
// one memory), which also guarantees that no state survives from one call to
// the next.
import {
  ABI_VERSION,
  LAYOUT_VERSION,
  MODE_DELTA,
  MODE_FULL,
  MODE_FULL_HEAD,
  MODE_FULL_PART,
} from "./abi";
import { readInput } from "./model";
import { planDelta, planFullHead, planFullPart, PlanResult } from "./batch";
import { ByteWriter } from "./writer";
import { IPVSPlanResult, planIPVSDelta, planIPVSFull } from "./ipvs_batch";
import { IPVS_LAYOUT_VERSION } from "./ipvs_layout";

let input: Uint8Array = new Uint8Array(0);
let output: ByteWriter = new ByteWriter(16);
let batch: ByteWriter = new ByteWriter(16);

export function abiVersion(): u32 {
  return ABI_VERSION;
}

export function layoutVersion(): u32 {
  return LAYOUT_VERSION;
}

export function allocInput(len: u32): usize {
  input = new Uint8Array(<i32> len);
  return input.dataStart;
}

function u32le(w: ByteWriter, v: u32): void {
  w.byte(<i32> (v & 0xff)).byte(<i32> ((v >> 8) & 0xff)).byte(<i32> ((v >> 16) & 0xff))
    .byte(<i32> (v >> 24));
}

function strs(w: ByteWriter, list: string[]): void {
  u32le(w, <u32> list.length);
  const tmp = new ByteWriter(64);
  for (let i = 0; i < list.length; i++) {
    tmp.reset();
    tmp.str(list[i]);
    u32le(w, <u32> tmp.len);
    w.append(tmp);
  }
}

function u32s(w: ByteWriter, list: u32[]): void {
  u32le(w, <u32> list.length);
  for (let i = 0; i < list.length; i++) u32le(w, list[i]);
}

function lists(res: PlanResult): void {
  output = new ByteWriter(1024);
  strs(output, res.added);
  strs(output, res.removed);
  strs(output, res.warnings);
}

/** Plans the input. The batch (UTF-8 JSON) is at batchPtr()/batchLen(); the
 *  returned length is that of the side output at outputPtr(): three string
 *  lists (u32 count, each u32 length + UTF-8): objects added, objects
 *  removed, warnings; a full sync's part adds its sets (name, declaration
 *  pairs) and a u32 list of the shared chains it uses. The batch is not
 *  copied: at 30k services it is tens of megabytes. A delta's batch is whole;
 *  a part's or a head's is bare commands (see batch.ts#planFullPart). */
export function plan(): u32 {
  const parsed = readInput(input.dataStart, <usize> input.length);
  if (parsed.mode == MODE_FULL_PART) {
    const part = planFullPart(parsed);
    batch = part.batch;
    lists(part);
    strs(output, part.sets);
    u32s(output, part.shared);
  } else if (parsed.mode == MODE_FULL_HEAD || parsed.mode == MODE_DELTA) {
    const res = parsed.mode == MODE_DELTA ? planDelta(parsed) : planFullHead(parsed);
    batch = res.batch;
    lists(res);
  } else {
    abort("planner input: an nftables full sync comes as parts and a head");
  }
  return <u32> output.len;
}

export function outputPtr(): usize {
  return output.buf.dataStart;
}

export function batchPtr(): usize {
  return batch.buf.dataStart;
}

export function batchLen(): u32 {
  return <u32> batch.len;
}

/** Layout version of IPVS mode's nftables table (its generation marker's name). */
export function ipvsLayoutVersion(): u32 {
  return IPVS_LAYOUT_VERSION;
}

/** Plans the input for IPVS mode. The nftables batch is at batchPtr()/batchLen();
 *  the side output holds plan()'s three lists, then two more: the IPVS records
 *  (one per service covered: `svc <id>`, `bind <address>` lines, then
 *  ipvsadm-restore lines) and, for a full plan, kube-ipvs0's addresses. */
export function planIPVS(): u32 {
  const parsed = readInput(input.dataStart, <usize> input.length);
  // IPVS mode plans a full sync in one call: its table is small (no
  // endpoint elements), and its records must come from one call.
  if (parsed.mode != MODE_FULL && parsed.mode != MODE_DELTA) {
    abort("planner input: IPVS mode plans a full sync in one call");
  }
  const res: IPVSPlanResult = parsed.mode == MODE_FULL
    ? planIPVSFull(parsed)
    : planIPVSDelta(parsed);
  batch = res.nft.batch;
  lists(res.nft);
  strs(output, res.records);
  strs(output, res.addresses);
  return <u32> output.len;
}
