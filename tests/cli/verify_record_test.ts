// `vma verify` is a command record like the others: main prints its help and
// checks its positionals.
import assert from "node:assert/strict";
import { verify } from "../../src/cli/verify.ts";
import { vma } from "../_cli_run.ts";

Deno.test("vma verify --help prints the record's help; positional errors use its synopsis", async () => {
  assert.equal(verify.synopsis, "usage: vma verify <filename> [-v]");
  assert.deepEqual(verify.positionals, ["<filename>"]);
  const help = await vma(["verify", "--help"]);
  assert.equal(help.stdout, verify.help);
  assert.equal(help.code, 0);
  const extra = await vma(["verify", "a.vma", "b\nc"]);
  assert.equal(
    extra.stderr,
    `vma: unexpected argument "b\\nc"\n${verify.synopsis}\nTry 'vma verify --help' for more.\n`,
  );
  assert.equal(extra.code, 2);
});
