/**
 * ScriptedRunner: a Runner for tests that answers each command by its joined
 * argv and records what was run; anything unscripted succeeds.
 */
import type { ProcessResult, Runner } from "./process.ts";

export class ScriptedRunner implements Runner {
  calls: string[] = [];
  constructor(readonly answer: (line: string) => Partial<ProcessResult> = () => ({})) {}
  run(argv: readonly string[]): Promise<ProcessResult> {
    const line = argv.join(" ");
    this.calls.push(line);
    const a = this.answer(line);
    return Promise.resolve({
      code: a.code ?? 0,
      stdout: a.stdout ?? new Uint8Array(),
      stderr: a.stderr ?? "",
    });
  }
}
