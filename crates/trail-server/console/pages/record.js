// One record, whole: actor, object, details (the patch as a diff), the request block with
// its body's SHA-256, and whether the browser could verify it is in the signed log.

import { get, orgPath } from "../api.js";
import { h, fill, text, objectId } from "../dom.js";
import { verifyRecord } from "../verify.js";

/** The log key first seen by this browser, per server: a later, different key is called
 * out (the log's key does not change). */
const PINNED = "trail.logKey";

export async function openRecord(org, ev) {
  document.getElementById("record")?.remove();
  const mark = h("p", { class: "verify pending", id: "verify", role: "status" }, "Checking this record against the signed log…");
  const close = h("button", { type: "button", class: "quiet close", "aria-label": "Close" }, "×");
  const dialog = h("dialog", { id: "record", class: "record", "aria-labelledby": "record-title" },
    h("header", {}, h("h2", { id: "record-title" }, ev.action), close),
    mark,
    section("When", [["Happened", ev.timestamp], ["Received", ev.receivedAt], ["Seq", ev.seq],
      ["Count", ev.count > 1 ? `${ev.count} (last ${ev.lastOccurredTimestamp})` : null]]),
    section("Actor", [["Id", ev.actor?.id], ["Type", ev.actor?.type], ["Token", ev.actor?.tokenId],
      ["Scope checked", ev.actor?.scope], ["IP", ev.actor?.ip], ["User agent", ev.actor?.userAgent],
      ["Sent by", ev.submittedBy ?? (ev.category === "api" || ev.category === "management" ? "Trail (its own record)" : null)]]),
    ev.object ? section("Object", [["Type", ev.object.type], ["Id", objectId(ev.object.id)],
      ["Parent", ev.object.parentId ? objectId(ev.object.parentId) : null]]) : null,
    ev.details ? details(ev.details) : null,
    ev.request ? section("Request", [["Method", ev.request.method], ["Route", ev.request.route],
      ["Status", ev.request.status], ["Latency", `${ev.request.latencyMs} ms`],
      ["Body SHA-256", ev.request.bodySha256 ? h("code", { class: "digest", id: "body-digest" }, ev.request.bodySha256) : "no body"]]) : null,
    section("Log", [["Org", ev.org], ["Instance", ev.instance], ["Event id", ev.id],
      ["Leaf hash", h("code", { class: "digest" }, ev.hash)]]),
    h("details", { class: "raw" }, h("summary", {}, "The record as JSON"),
      h("pre", {}, JSON.stringify(ev, null, 2))));
  const done = () => {
    dialog.close();
    dialog.remove();
  };
  close.addEventListener("click", done);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  close.focus();

  try {
    const [bundle, key] = await Promise.all([get(`${orgPath(org)}/events/${ev.seq}`), get("/v1/log/key")]);
    const r = await verifyRecord(ev, bundle, key);
    if (r.ok) {
      const pinned = JSON.parse(localStorage.getItem(PINNED) ?? "{}");
      const first = pinned[location.host];
      if (!first) {
        pinned[location.host] = r.vkey;
        localStorage.setItem(PINNED, JSON.stringify(pinned));
      }
      if (first && first !== r.vkey) {
        mark.className = "verify failed";
        fill(mark, "✗ Not verified: the log's signing key changed since this browser first saw it (",
          h("code", {}, first), " then, ", h("code", {}, r.vkey), " now). Ask your Trail operator why.");
        return;
      }
      mark.className = "verify ok";
      fill(mark, "✓ Verified: this record is entry ", String(ev.seq), " of the ", ev.org,
        " log, included in the tree of ", String(r.size), " events that ", r.keyName,
        " signed. Your browser checked the proof and the signature itself.");
    } else {
      mark.className = "verify failed";
      fill(mark, "✗ Not verified: ", r.reason);
    }
  } catch (e) {
    mark.className = "verify failed";
    fill(mark, "✗ Not verified: ", e.message);
  }
}

function section(title, rows) {
  const shown = rows.filter(([, v]) => v !== null && v !== undefined && v !== "");
  return h("section", {}, h("h3", {}, title),
    h("dl", {}, shown.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v instanceof Node ? v : text(v))])));
}

/** Details: the message and action type, the patch as a diff, anything else as JSON. */
function details(d) {
  if (typeof d !== "object" || d === null) return section("Details", [["Value", d]]);
  const { message, actionType, patch, ...rest } = d;
  return h("section", {}, h("h3", {}, "Details"),
    h("dl", {},
      message ? [h("dt", {}, "Message"), h("dd", {}, text(message))] : null,
      actionType ? [h("dt", {}, "Action type"), h("dd", {}, text(actionType))] : null,
      Object.keys(rest).length ? [h("dt", {}, "More"), h("dd", {}, h("pre", {}, JSON.stringify(rest, null, 2)))] : null),
    patch !== undefined && patch !== "" ? h("div", { class: "patch" }, h("h4", {}, "Patch"), diff(patch)) : null);
}

/** A patch as a diff: a unified diff's lines coloured; a JSON patch or merge patch as the
 * lines it removes and adds. */
function diff(patch) {
  let lines;
  if (typeof patch === "string") {
    let parsed = null;
    try {
      parsed = JSON.parse(patch);
    } catch {
      // A text diff.
    }
    lines = parsed === null ? patch.split("\n") : jsonLines(parsed);
  } else {
    lines = jsonLines(patch);
  }
  return h("pre", { class: "diff" }, lines.map((l) =>
    h("span", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("@@") ? "hunk" : null }, l, "\n")));
}

function jsonLines(p) {
  if (Array.isArray(p)) {
    // RFC 6902: one line per operation.
    return p.map((op) => op?.op === "remove" ? `- ${op.path}`
      : op?.op === "add" ? `+ ${op.path}: ${JSON.stringify(op.value)}`
      : op?.op === "replace" ? `~ ${op.path}: ${JSON.stringify(op.value)}`
      : `  ${JSON.stringify(op)}`);
  }
  if (p && typeof p === "object") {
    // RFC 7386: null removes a member.
    return Object.entries(p).map(([k, v]) => (v === null ? `- ${k}` : `+ ${k}: ${JSON.stringify(v)}`));
  }
  return [JSON.stringify(p)];
}
