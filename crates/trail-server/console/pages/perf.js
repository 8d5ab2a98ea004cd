// Performance: per route, requests, rate, error rates and p50/p95/p99 latency, from the
// recorded API calls of a window (seed 001's `perf`).

import { get, orgPath } from "../api.js";
import { h, fill } from "../dom.js";
import { go } from "../app.js";
import { listTable } from "./parts.js";
import { timeline } from "../chart.js";

const WINDOWS = [["1h", "1 hour"], ["24h", "24 hours"], ["7d", "7 days"]];

export async function render(view, { org, params }) {
  const since = params.get("since") ?? "24h";
  const until = params.get("until") ?? "";
  const route = params.get("route") ?? "";
  const q = new URLSearchParams({ since });
  if (until) q.set("until", until);
  if (route) q.set("route", route);
  const report = await get(`${orgPath(org)}/perf?${q}`);
  const base = `/orgs/${encodeURIComponent(org)}/perf`;
  const custom = Boolean(until) || !WINDOWS.some(([w]) => w === since);
  const pct = (x) => `${(x * 100).toFixed(x > 0 && x < 0.001 ? 2 : 1)}%`;
  const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const form = h("form", {
    class: "toolbar query-row", "aria-label": "Performance window",
    onsubmit: (e) => {
      e.preventDefault();
      const f = e.currentTarget;
      const w = f.elements["perf-window"].value;
      const next = w ? { since: w } : { since, until };
      if (f.elements["perf-route"].value.trim()) next.route = f.elements["perf-route"].value.trim();
      go(base, next);
    },
  },
  h("label", { for: "perf-window", class: "visually-hidden" }, "Window"),
  h("select", { id: "perf-window", name: "perf-window" },
    WINDOWS.map(([w, l]) => h("option", { value: w, selected: !until && w === since }, l)),
    // A slice zoomed into from the chart.
    custom ? h("option", { value: "", selected: true }, "the slice chosen") : null),
  h("label", { for: "perf-route", class: "visually-hidden" }, "Route"),
  h("input", { id: "perf-route", name: "perf-route", type: "search", value: route, placeholder: "a route, e.g. GET /v1/tenants/:id" }),
  h("button", { type: "submit", class: "primary" }, "Show"));
  const num = (x) => h("span", { class: "num" }, x);
  fill(view,
    h("h1", {}, "Performance"),
    form,
    timeline(report, (start, end) => go(base, { since: start, until: end, ...(route ? { route } : {}) })),
    h("p", { class: "hint" }, `${report.routesTotal} route${report.routesTotal === 1 ? "" : "s"} called from ${new Date(report.since).toLocaleString()} to ${new Date(report.until).toLocaleString()}; requests per minute over the ${report.spanMinutes.toFixed(0)} minute${report.spanMinutes >= 1.5 ? "s" : ""} in which they came.`),
    listTable("perf", [
      ["Route", (r) => h("a", { href: `#/orgs/${encodeURIComponent(org)}/audit?${new URLSearchParams({ route: r.route, since: report.since, until: report.until })}` }, r.route)],
      ["Requests", (r) => num(r.requests)],
      ["Per min", (r) => num(r.requestsPerMinute.toFixed(2))],
      ["5xx", (r) => num(pct(r.errorRate5xx))],
      ["4xx", (r) => num(pct(r.errorRate4xx))],
      ["p50 ms", (r) => num(ms(r.p50Ms))],
      ["p95 ms", (r) => num(ms(r.p95Ms))],
      ["p99 ms", (r) => num(ms(r.p99Ms))],
    ], report.routes, "No API calls recorded in this window."));
  return null;
}
