// The console's verification code (console/verify.js), in Node: RFC 6962 inclusion against
// Certificate Transparency's reference tree, the canonical encoding against trail-core's
// known answers, and C2SP signed notes with ed25519 keys.

import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign, createHash } from "node:crypto";
import {
  leafHash, rootFromInclusion, decodeCanonical, parseNote, parseVerifierKey, signedBy, hex, unhex,
} from "../../crates/trail-server/console/verify.js";

const LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
  "606162636465666768696a6b6c6d6e6f"].map(unhex);
const ROOTS = {
  3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};
const PROOFS = [
  [0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
  [5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
  [2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]],
  [1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
];

test("inclusion proofs of the RFC 6962 reference tree lead to its roots, and only from their leaf", async () => {
  for (const [index, size, proof] of PROOFS) {
    const leaf = await leafHash(LEAVES[index]);
    const root = await rootFromInclusion(leaf, BigInt(index), BigInt(size), proof.map(unhex));
    assert.equal(hex(root), ROOTS[size], `${index} of ${size}`);
    const other = await leafHash(LEAVES[(index + 1) % 8]);
    assert.notEqual(hex(await rootFromInclusion(other, BigInt(index), BigInt(size), proof.map(unhex))), ROOTS[size]);
    await assert.rejects(rootFromInclusion(leaf, BigInt(index), BigInt(size * 2), proof.map(unhex)));
  }
});

/** trail-core's `minimal_v2` event, byte by byte (canonical.rs, `encodes_as_documented`). */
function minimalV2() {
  const b = [];
  const u64 = (n) => { for (let i = 7; i >= 0; i--) b.push(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn)); };
  const str = (s) => {
    const e = new TextEncoder().encode(s);
    b.push((e.length >>> 24) & 0xff, (e.length >>> 16) & 0xff, (e.length >>> 8) & 0xff, e.length & 0xff, ...e);
  };
  b.push(2);
  str("e1"); u64(2); str("o"); b.push(0); u64(1); u64(3); str("a"); str("app"); str("u"); str("user");
  b.push(0, 0, 0, 0, 0, 0, 0);
  u64(1); u64(1);
  b.push(1); str("key_1");
  return Uint8Array.from(b);
}

test("canonical bytes decode as trail-core encodes them, with its known-answer hash", async () => {
  const bytes = minimalV2();
  assert.equal(hex(await leafHash(bytes)), "f335aadb56b69455d2d7aaeb978d45ab6e114d4dcde6444a9fcc80fa9b8e5532");
  const e = decodeCanonical(bytes);
  assert.equal(e.version, 2);
  assert.equal(e.id, "e1");
  assert.equal(e.seq, 2n);
  assert.equal(e.org, "o");
  assert.equal(e.timestamp, 1n);
  assert.equal(e.receivedAt, 3n);
  assert.deepEqual(e.actor, { id: "u", type: "user", ip: null, userAgent: null, tokenId: null, scope: null });
  assert.equal(e.submittedBy, "key_1");
  // Version 1 has no provenance; anything after the event, or cut short, is refused.
  const v1 = bytes.slice(0, bytes.length - 10);
  v1[0] = 1;
  assert.equal(hex(await leafHash(v1)), "c6615750a6f7e665bfaff0451fbacd3aa8712d1c2747f53c2dda479a1dd4b12c");
  assert.equal(decodeCanonical(v1).submittedBy, null);
  assert.throws(() => decodeCanonical(Uint8Array.of(...bytes, 0)));
  assert.throws(() => decodeCanonical(bytes.slice(0, 20)));
});

/** A verifier key and a signed note made with Node's own ed25519, in the text forms Trail
 * uses; the key drawn until its base64 holds a "+" (a separator of the key's text). */
function signer() {
  for (;;) {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const raw = Buffer.concat([Buffer.of(1), publicKey.export({ format: "der", type: "spki" }).subarray(12)]);
    const name = "trail-test.local";
    const hash = createHash("sha256").update(`${name}\n`).update(raw).digest().subarray(0, 4);
    const b64 = raw.toString("base64");
    if (!b64.includes("+")) continue;
    const vkey = `${name}+${hash.toString("hex")}+${b64}`;
    const note = (body) => {
      const sig = sign(null, Buffer.from(body), privateKey);
      return `${body}\n\u2014 ${name} ${Buffer.concat([hash, sig]).toString("base64")}\n`;
    };
    return { vkey, note };
  }
}

test("a signed note verifies with its key only, and not once changed", async () => {
  const { vkey, note } = signer();
  const body = `trail-test.local/acme\n8\n${Buffer.from(unhex(ROOTS[8])).toString("base64")}\n`;
  const signed = parseNote(note(body));
  assert.equal(signed.origin, "trail-test.local/acme");
  assert.equal(signed.size, 8n);
  assert.equal(hex(signed.root), ROOTS[8]);
  const key = await parseVerifierKey(vkey);
  assert.equal(await signedBy(signed, key), true);
  const changed = parseNote(note(body).replace("\n8\n", "\n9\n"));
  assert.equal(await signedBy(changed, key), false);
  const other = await parseVerifierKey(signer().vkey);
  assert.equal(await signedBy(signed, other), false);
  await assert.rejects(parseVerifierKey(vkey.replace(/\+[0-9a-f]{8}\+/, "+00000000+")));
});
