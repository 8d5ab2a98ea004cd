// The Archive dialog (seed 000): the org's weekly archives, each a ZIP of one JSON file per
// day, with a download icon each; the current week as a partial archive. A downloaded
// archive verifies offline with `trail verify --archive FILE.zip`.

import { get, orgPath, seg } from "../api.js";
import { h, svg, fill, localTime } from "../dom.js";

/** A download arrow. */
const icon = () => svg("svg", { viewBox: "0 0 16 16", width: "16", height: "16", "aria-hidden": "true", class: "icon" },
  svg("path", { d: "M8 1v9m0 0L4.5 6.5M8 10l3.5-3.5M2 12v2h12v-2", fill: "none", stroke: "currentColor", "stroke-width": "1.6", "stroke-linecap": "round", "stroke-linejoin": "round" }));

const size = (n) => n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;

export async function openArchive(org) {
  document.getElementById("archive")?.remove();
  const close = h("button", { type: "button", class: "quiet close", "aria-label": "Close" }, "×");
  const body = h("div", { class: "archive-body", role: "status" }, "Loading the weekly archives…");
  const dialog = h("dialog", { id: "archive", class: "record", "aria-labelledby": "archive-title" },
    h("header", {}, h("h2", { id: "archive-title" }, "Audit Logs Archive"), close),
    body);
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  close.focus();

  const link = (week, partial) => h("a", {
    class: "download", href: `${orgPath(org)}/archives/${seg(week)}`,
    download: `${org}-${week}${partial ? "-partial" : ""}.zip`,
    "aria-label": `Download ${week}${partial ? " (partial)" : ""}`, title: `Download ${week} as a ZIP`,
  }, icon());
  try {
    const list = await get(`${orgPath(org)}/archives`);
    const rows = [...list.items].reverse().map((a) => h("tr", {},
      h("th", { scope: "row" }, a.week),
      h("td", { class: "num" }, a.events.toLocaleString()),
      h("td", { class: "num" }, size(a.size)),
      h("td", {}, localTime(a.createdAt)),
      h("td", {}, link(a.week, false))));
    fill(body,
      h("p", {}, "One ZIP per week (Monday to Sunday, UTC): a JSON file for each day, and a manifest with each file's SHA-256 and the signed checkpoint, so it can be checked offline with ",
        h("code", {}, "trail verify --archive FILE.zip"), "."),
      h("table", { class: "archives", id: "archives" },
        h("caption", { class: "visually-hidden" }, "Weekly archives, newest first"),
        h("thead", {}, h("tr", {}, ["Week", "Events", "Size", "Made", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {},
          h("tr", { class: "current" },
            h("th", { scope: "row" }, list.current),
            h("td", { colspan: "3" }, "This week so far (partial, made when downloaded)"),
            h("td", {}, link(list.current, true))),
          ...rows)),
      rows.length ? null : h("p", { class: "muted" }, "No week has ended since this org was made: its first archive is built the Monday after."));
  } catch (err) {
    fill(body, h("p", { class: "field-error", role: "alert" }, `The archives cannot be listed: ${err.message}`));
  }
}
