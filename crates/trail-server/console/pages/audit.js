// Audit Logs: the org's log (or one instance's), newest first. Every filter is applied by
// the server over the whole log, never to the rows already loaded; the filters live in the
// URL, so a view is a link and survives a reload. A row opens its whole record, whose
// inclusion in the signed log the browser verifies itself.

import { get, orgPath, seg, exportPage } from "../api.js";
import { h, fill, text, objectId, localTime, announce } from "../dom.js";
import { go, session, holds } from "../app.js";
import { openArchive } from "./archive.js";
import { openRecord } from "./record.js";
import { histogram } from "../chart.js";

/** The query language's keys, for suggestions (the API's filter names). */
const KEYS = ["actor", "actorType", "action", "category", "objectType", "objectKind",
  "objectName", "route", "method", "status", "instance", "tokenId", "ip", "since", "until"];

/** The quick filters: URL parameter (= API parameter) and label. */
const QUICK = [
  ["actor", "Actor"], ["action", "Action"], ["objectName", "Object"], ["route", "Route"],
  ["status", "Status"], ["category", "Category"],
];

const WINDOWS = [["15m", "15 min"], ["1h", "1 hour"], ["24h", "24 hours"], ["7d", "7 days"],
  ["", "All time"], ["custom", "Custom…"]];

/** Parameters of the view that are filters (sent to the API as they are). */
const FILTERS = ["q", "since", "until", ...QUICK.map(([k]) => k), "actorType", "objectType", "objectKind", "method", "tokenId", "ip"];

export async function render(view, { org, params }) {
  return renderLog(view, { org, instance: null, params, base: `/orgs/${encodeURIComponent(org)}/audit` });
}

/** The log view, for an org or (with `instance`) one of its instances. */
export async function renderLog(view, { org, instance, params, base, title }) {
  const apiBase = instance
    ? `${orgPath(org)}/instances/${seg(instance)}/audit-logs`
    : `${orgPath(org)}/audit-logs`;
  const filters = new URLSearchParams();
  for (const k of FILTERS) for (const v of params.getAll(k)) if (v !== "") filters.append(k, v);
  const cursor = params.get("cursor");
  // The collapsed view: runs of identical events as one row with a count (server-side).
  const collapse = params.get("collapse") === "1";
  const live = params.get("live") === "1" && !collapse;
  // The viewer's own calls (this console's reads among them), left out on request.
  const hideOwn = params.get("hideOwn") === "1";
  const own = session.me?.credentialId;
  if (hideOwn && own) {
    const q = filters.get("q");
    filters.set("q", `${q ? `${q} ` : ""}-tokenId:${own}`);
  }

  // --- the toolbar: query box, time window, quick filters ---
  const queryError = h("p", { class: "field-error", id: "query-error", role: "alert" });
  const q = h("input", {
    id: "query", name: "q", type: "search", value: params.get("q") ?? "", list: "query-keys",
    placeholder: 'actor:alice action:deleted route:"GET /v1/tenants/:id" -status:200',
    "aria-describedby": "query-help query-error", autocomplete: "off", spellcheck: "false",
  });
  const keys = h("datalist", { id: "query-keys" });
  q.addEventListener("input", () => {
    // Suggest keys for the word being typed: `act` → `actor:`, `action:`, `actorType:`.
    const word = q.value.slice(0, q.selectionStart).split(/\s+/).pop().replace(/^-/, "");
    const head = q.value.slice(0, q.selectionStart - word.length);
    fill(keys, word.includes(":") ? [] : KEYS.filter((k) => k.startsWith(word) && k !== word)
      .map((k) => h("option", { value: `${head}${k}:` })));
  });
  const since = params.get("since") ?? "24h";
  const isCustom = since !== "" && !WINDOWS.some(([w]) => w === since);
  const windowSelect = h("select", { id: "window", name: "window", "aria-label": "Time window" },
    WINDOWS.map(([w, label]) => h("option", { value: w, selected: isCustom ? w === "custom" : w === since }, label)));
  const customSince = h("input", { id: "since", name: "since", type: "datetime-local", value: isCustom ? toLocalInput(since) : "", "aria-label": "From" });
  const customUntil = h("input", { id: "until", name: "until", type: "datetime-local", value: params.get("until") ? toLocalInput(params.get("until")) : "", "aria-label": "To" });
  const custom = h("span", { class: "custom-window", hidden: !isCustom }, customSince, " – ", customUntil);
  windowSelect.addEventListener("change", () => {
    custom.hidden = windowSelect.value !== "custom";
  });
  const quick = QUICK.map(([k, label]) =>
    h("label", { class: "quick" }, h("span", {}, label),
      h("input", { name: k, id: `f-${k}`, type: "text", value: params.get(k) ?? "", autocomplete: "off", spellcheck: "false" })));

  const apply = (extra = {}) => {
    const next = new URLSearchParams();
    if (q.value.trim()) next.set("q", q.value.trim());
    if (windowSelect.value === "custom") {
      if (customSince.value) next.set("since", new Date(customSince.value).toISOString());
      if (customUntil.value) next.set("until", new Date(customUntil.value).toISOString());
    } else {
      next.set("since", windowSelect.value);
    }
    for (const [k] of QUICK) {
      const v = view.querySelector(`#f-${k}`).value.trim();
      if (v) next.set(k, v);
    }
    if (live) next.set("live", "1");
    if (hideOwn) next.set("hideOwn", "1");
    if (collapse) next.set("collapse", "1");
    for (const [k, v] of Object.entries(extra)) {
      if (v === null) next.delete(k);
      else next.set(k, v);
    }
    go(base, next);
  };
  const form = h("form", {
    class: "toolbar", role: "search", "aria-label": "Filter the audit log",
    onsubmit: (e) => {
      e.preventDefault();
      apply();
    },
  },
  h("div", { class: "query-row" },
    h("label", { for: "query", class: "visually-hidden" }, "Query"), q, keys, windowSelect, custom,
    h("button", { type: "submit", class: "primary" }, "Search")),
  h("p", { class: "hint", id: "query-help" },
    "key:value terms (", KEYS.slice(0, 9).join(", "), ", …), quoted values, ", h("code", {}, "-"), " to exclude. All terms must match."),
  queryError,
  h("div", { class: "quick-filters" }, quick,
    h("button", { type: "button", class: "quiet", onclick: () => go(base) }, "Clear")));

  // --- the table ---
  const body = h("tbody");
  const table = h("table", { class: "log", id: "log" },
    h("caption", { class: "visually-hidden" }, title ?? "Audit log, newest first"),
    h("thead", {}, h("tr", {},
      ["Timestamp", "Object", "Actor", "Action", "Details"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const hideToggle = h("label", { class: "live" },
    h("input", { type: "checkbox", id: "hide-own", checked: hideOwn,
      onchange: (e) => apply({ hideOwn: e.target.checked ? "1" : null, cursor: null }) }),
    " Hide my calls");
  const liveToggle = h("label", { class: "live", title: collapse ? "The live tail shows every event: turn off “Collapse repeats” first" : null },
    h("input", { type: "checkbox", id: "live", checked: live, disabled: !!cursor || collapse,
      onchange: (e) => apply({ live: e.target.checked ? "1" : null, cursor: null }) }),
    " Live tail");
  const collapseToggle = h("label", { class: "live", title: "Identical events (same actor, action, object and details) within a minute of each other as one row with a count; stored events are not changed" },
    h("input", { type: "checkbox", id: "collapse", checked: collapse,
      onchange: (e) => apply({ collapse: e.target.checked ? "1" : null, cursor: null, live: null }) }),
    " Collapse repeats");
  // Export: every event received since the window's start that passes the filters (not
  // only this page), oldest first, pulled page by page from the SIEM export endpoint.
  const exportStatus = h("span", { class: "export-status", role: "status" });
  const exportAs = (format, ext) => h("button", {
    type: "button", class: "link", id: `export-${format}`,
    title: "Every matching event received since the window's start, oldest first",
    onclick: (e) => exportFile(e.currentTarget, format, ext),
  }, ext.toUpperCase());
  const exportFile = async (button, format, ext) => {
    const p = new URLSearchParams(filters);
    p.delete("until");
    const start = p.get("since") ?? since;
    p.set("since", start === "" ? "1970-01-01T00:00:00Z" : start);
    if (instance) p.set("instance", instance);
    if (collapse) p.set("collapse", "true");
    p.set("format", format);
    p.set("limit", "1000");
    const buttons = [...exportLinks.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    const parts = [];
    let records = 0;
    try {
      for (;;) {
        const page = await exportPage(`${orgPath(org)}/audit-logs/export?${p}`);
        let text = page.text;
        // Each CSV page starts with the header row; the file has it once.
        if (format === "csv" && parts.length) text = text.slice(text.indexOf("\n") + 1);
        parts.push(text);
        records += page.records;
        exportStatus.textContent = `${records} exported…`;
        if (!page.more) break;
        p.delete("since");
        p.set("cursor", page.cursor);
      }
      const type = { csv: "text/csv", ndjson: "application/x-ndjson", cef: "text/plain" }[format];
      const url = URL.createObjectURL(new Blob(parts, { type }));
      const a = h("a", { href: url, download: `${org}-audit-logs.${ext}`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      exportStatus.textContent = `${records} event${records === 1 ? "" : "s"} exported`;
    } catch (err) {
      exportStatus.textContent = `Export failed: ${err.message}`;
    } finally {
      for (const b of buttons) b.disabled = false;
      button.focus();
    }
  };
  const exportLinks = h("span", { class: "export" }, "Export: ",
    exportAs("csv", "csv"), " · ", exportAs("ndjson", "ndjson"), " · ", exportAs("cef", "cef"),
    " ", exportStatus);
  const chart = h("div", { class: "chart-slot" });
  // Seed 000's Archive button, upper right: the org's weekly ZIPs.
  const archiveButton = !instance && holds(org, "archives:read")
    ? h("button", { type: "button", id: "archive-button", onclick: () => openArchive(org) }, "Archive")
    : null;
  fill(view,
    h("div", { class: "title-row" }, h("h1", {}, title ?? "Audit Logs"), archiveButton),
    form,
    chart,
    h("div", { class: "table-bar" }, h("span", { class: "toggles" }, liveToggle, hideToggle, collapseToggle), exportLinks),
    h("div", { class: "table-wrap" }, table),
    pager);

  // --- the shape of what matches over the whole window (not only this page) ---
  if (!instance) {
    const hq = new URLSearchParams(filters);
    if (!hq.has("since")) hq.set("since", since);
    hq.set("buckets", "60");
    get(`${apiBase}/histogram?${hq}`).then((hist) => {
      fill(chart, histogram(hist, (from, to) => {
        const zoom = new URLSearchParams(params);
        zoom.set("since", from);
        zoom.set("until", to);
        zoom.delete("cursor");
        go(base, zoom);
      }));
    }, () => fill(chart));
  }

  // --- the page of events ---
  const query = new URLSearchParams(filters);
  if (!query.has("since")) query.set("since", since);
  if (cursor) query.set("cursor", cursor);
  if (collapse) query.set("collapse", "true");
  let page;
  try {
    page = await get(`${apiBase}?${query}`);
  } catch (e) {
    if (e.status === 400) {
      queryError.textContent = e.message;
      q.setAttribute("aria-invalid", "true");
      fill(body, h("tr", {}, h("td", { colspan: 5, class: "empty" }, "Fix the query to see events.")));
      return null;
    }
    throw e;
  }
  const rows = new Map();
  const addRow = (ev, where = "append") => {
    if (rows.has(ev.seq)) return;
    const tr = row(ev, () => openRecord(org, ev));
    rows.set(ev.seq, tr);
    if (where === "prepend") body.prepend(tr);
    else body.append(tr);
  };
  for (const ev of page.items) addRow(ev);
  if (!page.items.length) {
    body.append(h("tr", { class: "none" }, h("td", { colspan: 5, class: "empty" }, "No events match.")));
  }
  fill(pager,
    cursor ? h("button", { type: "button", onclick: () => history.back() }, "← Newer") : null,
    page.nextCursor ? h("button", { type: "button", id: "older", onclick: () => apply({ cursor: page.nextCursor, live: null }) }, "Older →") : null);
  announce(`${page.items.length} event${page.items.length === 1 ? "" : "s"}${page.nextCursor ? ", more on the next page" : ""}`);

  if (!live || cursor) return null;
  // --- live tail: new matching events as they are committed, on top ---
  const stream = new URLSearchParams(filters);
  stream.delete("since");
  stream.delete("until");
  // From just after the newest event shown: nothing committed since the page was read is
  // missed, and nothing shown comes twice.
  const newest = page.items[0]?.seq;
  if (newest !== undefined) stream.set("from", String(newest + 1));
  const source = new EventSource(`${apiBase.replace(/audit-logs$/, "audit-logs/stream")}?${stream}`);
  source.addEventListener("audit", (m) => {
    const ev = JSON.parse(m.data);
    body.querySelector("tr.none")?.remove();
    addRow(ev, "prepend");
    rows.get(ev.seq)?.classList.add("new");
  });
  source.addEventListener("error", () => announce("Live tail interrupted; reconnecting…", "warn"));
  source.addEventListener("open", () => announce("Live tail on"));
  return () => source.close();
}

function row(ev, open) {
  const bg = ev.actor?.type === "break_glass";
  const details = ev.details?.message ?? (ev.request ? `${ev.request.route} → ${ev.request.status}` : text(ev.details));
  const tr = h("tr", { class: bg ? "break-glass" : null, tabindex: 0, dataset: { seq: ev.seq },
    onclick: open,
    onkeydown: (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        open();
      }
    },
  },
  h("td", { class: "ts" }, h("time", { datetime: ev.timestamp, title: ev.timestamp }, localTime(ev.timestamp))),
  h("td", {}, ev.object ? [h("span", { class: "kind" }, ev.object.type), " ", objectId(ev.object.id)] : ""),
  h("td", {}, ev.actor?.id, " ", h("span", { class: `badge ${ev.actor?.type}` }, ev.actor?.type),
    ev.submittedBy ? h("span", { class: "via", title: "sent by this credential" }, ` via ${ev.submittedBy}`) : null),
  h("td", {}, ev.action,
    ev.seqs && ev.count > 1 ? h("span", { class: "repeats", title: `${ev.count} identical events, the last at ${ev.lastOccurredTimestamp}` }, ` ×${ev.count}`) : null),
  h("td", { class: "details" }, details));
  return tr;
}

/** An RFC 3339 time as the value of a datetime-local input (local time). */
function toLocalInput(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 19);
}
