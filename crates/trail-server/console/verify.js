// Checking, in the browser, that a record is in its org's signed log: its canonical bytes
// decode to what the page shows, their RFC 6962 leaf hash is included (by the inclusion
// proof) in the tree whose root the latest checkpoint names, and that checkpoint carries a
// valid ed25519 signature (C2SP signed note) by the log's key. Nothing here trusts the
// server's own word that an event is included: it is all recomputed with WebCrypto.

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
export const unhex = (s) => new Uint8Array((s.match(/../g) ?? []).map((x) => parseInt(x, 16)));
export const unbase64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function sha256(...parts) {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", all));
}

/** RFC 6962 leaf hash: SHA-256(0x00 ‖ bytes). */
export const leafHash = (bytes) => sha256(Uint8Array.of(0), bytes);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

/** The root of a tree of `size` leaves, from leaf `index`'s hash and its inclusion proof
 * (RFC 9162 §2.1.3.2). */
export async function rootFromInclusion(leaf, index, size, proof) {
  if (index >= size) throw new Error(`entry ${index} is not in a tree of ${size}`);
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error("the proof is longer than the tree is deep");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the proof is shorter than the tree is deep");
  return r;
}

/** Reads canonical bytes (encoding 1 or 2; see trail-core's `canonical`). */
export function decodeCanonical(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n) => {
    if (at + n > bytes.length) throw new Error("the canonical bytes end too soon");
  };
  const u8 = () => {
    need(1);
    return bytes[at++];
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(at);
    at += 2;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(at);
    at += 8;
    return v;
  };
  const i64 = () => {
    need(8);
    const v = view.getBigInt64(at);
    at += 8;
    return v;
  };
  const str = () => {
    need(4);
    const n = view.getUint32(at);
    at += 4;
    need(n);
    const s = dec.decode(bytes.subarray(at, at + n));
    at += n;
    return s;
  };
  const opt = (f) => (u8() === 1 ? f() : null);
  const version = u8();
  if (version !== 1 && version !== 2) throw new Error(`unknown canonical encoding ${version}`);
  const e = {
    version, id: str(), seq: u64(), org: str(), instance: opt(str),
    timestamp: i64(), receivedAt: i64(), action: str(), category: str(),
    actor: { id: str(), type: str(), ip: opt(str), userAgent: opt(str), tokenId: opt(str), scope: opt(str) },
  };
  e.object = opt(() => ({ type: str(), id: opt(str), parentId: opt(str) }));
  e.details = opt(str);
  e.request = opt(() => {
    const r = { method: str(), route: str(), status: u16(), latencyUs: u64() };
    r.bodySha256 = opt(() => {
      need(32);
      const h = hex(bytes.subarray(at, at + 32));
      at += 32;
      return h;
    });
    return r;
  });
  e.count = u64();
  e.lastOccurred = i64();
  e.submittedBy = version >= 2 ? opt(str) : null;
  if (at !== bytes.length) throw new Error("the canonical bytes go on past the event");
  return e;
}

/** Microseconds since the epoch of an RFC 3339 UTC time with up to 6 decimals. */
export function micros(ts) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts ?? "");
  if (!m) return null;
  const secs = BigInt(Date.parse(`${m[1]}Z`) / 1000);
  const frac = BigInt(((m[2] ?? "") + "000000").slice(0, 6));
  return secs * 1000000n + frac;
}

/** Equal as JSON values (RFC 8785 text against a parsed value). */
function sameJson(canonicalText, value) {
  if (canonicalText === null) return value === null || value === undefined;
  return stable(JSON.parse(canonicalText)) === stable(value);
}
function stable(v) {
  if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

/** The fields where the record shown differs from its canonical bytes (none: it is them). */
export function differences(record, c) {
  const diffs = [];
  const check = (name, ok) => {
    if (!ok) diffs.push(name);
  };
  check("seq", BigInt(record.seq) === c.seq);
  check("org", record.org === c.org);
  check("instance", (record.instance ?? null) === c.instance);
  check("timestamp", micros(record.timestamp) === c.timestamp);
  check("receivedAt", micros(record.receivedAt) === c.receivedAt);
  check("action", record.action === c.action);
  check("category", record.category === c.category);
  for (const k of ["id", "type", "ip", "userAgent", "tokenId", "scope"]) {
    check(`actor.${k}`, (record.actor?.[k] ?? null) === c.actor[k]);
  }
  check("object", (record.object == null) === (c.object === null));
  if (record.object && c.object) {
    check("object.type", record.object.type === c.object.type);
    check("object.id", sameJson(c.object.id, record.object.id));
    check("object.parentId", sameJson(c.object.parentId, record.object.parentId));
  }
  check("details", sameJson(c.details, record.details));
  check("request", (record.request == null) === (c.request === null));
  if (record.request && c.request) {
    check("request.method", record.request.method === c.request.method);
    check("request.route", record.request.route === c.request.route);
    check("request.status", record.request.status === c.request.status);
    check("request.bodySha256", (record.request.bodySha256 ?? null) === c.request.bodySha256);
  }
  check("count", BigInt(record.count ?? 1) === c.count);
  check("submittedBy", (record.submittedBy ?? null) === c.submittedBy);
  return diffs;
}

/** A signed note: its checkpoint (origin, size, root) and signatures. */
export function parseNote(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint is not a signed note");
  const body = note.slice(0, split + 1);
  const [origin, size, root] = body.split("\n");
  if (!/^\d+$/.test(size ?? "")) throw new Error("the checkpoint's size is not a number");
  const signatures = note.slice(split + 2).split("\n").filter(Boolean).map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("a signature line is malformed");
    const raw = unbase64(m[2]);
    return { name: m[1], keyHash: raw.subarray(0, 4), signature: raw.subarray(4) };
  });
  return { body, origin, size: BigInt(size), root: unbase64(root), signatures };
}

/** A verifier key, `<name>+<hash hex>+<base64(0x01 ‖ ed25519 key)>`, checked. */
export async function parseVerifierKey(vkey) {
  // The base64 part may itself hold a "+": only the first two separate.
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  if (first < 0 || second < 0) throw new Error("the log key is not a verifier key");
  const [name, hashHex, b64] = [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  const raw = unbase64(b64 ?? "");
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("the log key is not an ed25519 verifier key");
  const hash = (await sha256(enc.encode(`${name}\n`), raw)).subarray(0, 4);
  if (hex(hash) !== hashHex.toLowerCase()) throw new Error("the log key's hash does not match it");
  const key = await crypto.subtle.importKey("raw", raw.subarray(1), { name: "Ed25519" }, false, ["verify"]);
  return { name, hash, key };
}

/** Whether the note carries a valid signature by `vkey`. */
export async function signedBy(note, vkey) {
  for (const s of note.signatures) {
    if (s.name !== vkey.name || hex(s.keyHash) !== hex(vkey.hash)) continue;
    if (await crypto.subtle.verify({ name: "Ed25519" }, vkey.key, s.signature, enc.encode(note.body))) return true;
  }
  return false;
}

/** Checks `record` (as listed) against the log: the proof bundle of
 * `GET /v1/orgs/{org}/events/{seq}` and the log's key from `GET /v1/log/key`. Answers
 * `{ ok: true, size, keyName }` or `{ ok: false, reason }`, in words for a person. */
export async function verifyRecord(record, bundle, logKey) {
  try {
    const bytes = unbase64(bundle.event.canonical);
    const leaf = await leafHash(bytes);
    if (hex(leaf) !== record.hash) {
      return { ok: false, reason: "The record's hash is not the hash of its stored bytes." };
    }
    const diffs = differences(record, decodeCanonical(bytes));
    if (diffs.length) {
      return { ok: false, reason: `What is shown differs from what was logged: ${diffs.join(", ")}.` };
    }
    if (!bundle.inclusion) {
      // Every event a running server stores is signed as it is stored: one without a
      // checkpoint is in a log the server refused to sign, or was stored without its key.
      return { ok: false, reason: "No signed checkpoint covers it: the server has not signed this part of the log (run `trail verify` on it)." };
    }
    const note = parseNote(bundle.inclusion.checkpoint);
    const vkey = await parseVerifierKey(logKey.verifierKey);
    if (!(await signedBy(note, vkey))) {
      return { ok: false, reason: "The checkpoint is not signed by the log's key." };
    }
    if (note.origin !== `${vkey.name}/${record.org}`) {
      return { ok: false, reason: `The checkpoint is for log ${note.origin}, not this org's.` };
    }
    if (note.size !== BigInt(bundle.inclusion.treeSize)) {
      return { ok: false, reason: "The proof is for another tree size than the checkpoint's." };
    }
    const root = await rootFromInclusion(leaf, BigInt(record.seq), note.size, bundle.inclusion.proof.map(unhex));
    if (hex(root) !== hex(note.root)) {
      return { ok: false, reason: "The inclusion proof does not lead to the signed root: this event is not in the log as signed." };
    }
    return { ok: true, size: note.size, keyName: vkey.name, vkey: logKey.verifierKey };
  } catch (e) {
    return { ok: false, reason: `It could not be checked: ${e.message}` };
  }
}
