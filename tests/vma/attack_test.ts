// Names in library errors: whatever a caller or an archive names a config or a
// device, the message is one line with the name JSON-quoted.
import assert from "node:assert/strict";
import { VmaFormatError, VmaReader, VmaWriter } from "../../mod.ts";
import { craftHeader, streamOf } from "../_craft.ts";

Deno.test("VmaWriter quotes a config or device name with a newline in its refusal", () => {
  const writer = new VmaWriter();
  assert.throws(() => writer.addConfig("a\nvma: forged", "x"), {
    name: "TypeError",
    message: 'Cannot add config "a\\nvma: forged": the name contains whitespace',
  });
  assert.throws(() => writer.addDevice('x"\u2028y', 4096), {
    name: "TypeError",
    message: 'Cannot add device "x\\"\\u2028y": the name contains whitespace',
  });
});

Deno.test("VmaReader quotes a device name with a newline when its size is unsupported", async () => {
  const { bytes } = craftHeader({
    devices: [{ name: "a\nvma: forged", size: 2n ** 64n - 1n }],
  });
  await assert.rejects(new VmaReader(streamOf(bytes)).header(), (e) => {
    assert.ok(e instanceof VmaFormatError);
    assert.match(
      e.message,
      /^vma device "a\\nvma: forged" has an unsupported size 18446744073709551615/,
    );
    return true;
  });
});
