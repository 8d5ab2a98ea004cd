// Pieces the pages share: a list as a table, a secret shown once with a copy button, a
// form's error line, and asking before something is undone.

import { h } from "../dom.js";

/** A table of `items` with `columns` ([heading, item => cell]); `empty` when there are none. */
export function listTable(id, columns, items, empty) {
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, columns.map(([c]) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.length
      ? items.map((it) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(it)))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)))));
}

/** A secret, shown once: selectable, with a copy button, and what to do with it. */
export function secretOnce(label, value, note) {
  const code = h("code", { class: "secret", tabindex: 0 }, value);
  const copied = h("span", { class: "copied", role: "status" });
  const copy = h("button", {
    type: "button",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value);
        copied.textContent = "Copied";
      } catch {
        // No clipboard (a page not served over https): select it for the person to copy.
        getSelection().selectAllChildren(code);
        copied.textContent = "Selected: press Ctrl+C";
      }
    },
  }, "Copy");
  return h("div", { class: "secret-once", role: "alert" },
    h("p", {}, h("strong", {}, label), " — shown this once; Trail keeps only its hash."),
    h("div", { class: "secret-row" }, code, copy, copied),
    note ? h("p", { class: "hint" }, note) : null);
}

/** A form's error line. */
export const formError = () => h("p", { class: "form-error", role: "alert" });

/** Asks before a change that cannot be taken back. */
export const sure = (what) => window.confirm(what);

/** A date as a short local date, or a dash. */
export const day = (ts) => (ts ? new Date(ts).toLocaleDateString() : "—");
