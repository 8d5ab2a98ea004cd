// Building the page: elements from data, text always as text (never parsed as HTML), so no
// event field can add markup or script to the page.

/** An element: `h("a", {href: "#/x", class: "nav"}, "text", child, ...)`. Attributes named
 * `on<event>` take a listener; `false`, `null` and `undefined` attributes are left out. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/** An SVG element, built the same way. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces what `el` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A value as one line of text: strings as they are, the rest as compact JSON. */
export function text(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** An object id (a string, or an object of parts such as kind and name) as a short line. */
export function objectId(id) {
  if (id === null || id === undefined) return "";
  if (typeof id !== "object") return String(id);
  const parts = Object.values(id).filter((p) => p !== "" && p !== null);
  return parts.map(text).join(" / ");
}

/** A stored UTC time as the viewer's local time, to the second. */
export function localTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts ?? "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Says `message` to screen readers and shows it in the page's status line. */
export function announce(message, kind = "info") {
  const el = document.getElementById("status");
  if (!el) return;
  el.dataset.kind = kind;
  el.textContent = message;
}
