// Charts as SVG, drawn from data: the histogram of matching events over a window, and API
// calls over time (requests, errors, latency).

import { svg, h } from "./dom.js";

/** Bars of `buckets` ({start, count}), each `bucketSeconds` long; clicking one calls
 * `onPick(start, end)` (RFC 3339). Labelled for assistive technology as a whole, and each
 * bar with its slice and count. */
export function histogram({ buckets, bucketSeconds, total }, onPick) {
  const W = 1000;
  const H = 90;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const bw = W / Math.max(1, buckets.length);
  const end = (b) => new Date(new Date(b.start).getTime() + bucketSeconds * 1000).toISOString();
  const bars = buckets.map((b, i) => {
    const bh = b.count ? Math.max(2, (b.count / max) * (H - 4)) : 0;
    const label = `${new Date(b.start).toLocaleString()}: ${b.count} event${b.count === 1 ? "" : "s"}`;
    return svg("g", { class: "bar", tabindex: b.count ? 0 : -1, role: "button", "aria-label": `${label}; zoom to it`,
      onclick: () => onPick(b.start, end(b)),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          onPick(b.start, end(b));
        }
      },
    },
    svg("title", {}, label),
    svg("rect", { x: i * bw, y: 0, width: bw, height: H, class: "hit" }),
    svg("rect", { x: i * bw + bw * 0.1, y: H - bh, width: bw * 0.8, height: bh, class: "fill" }));
  });
  return h("figure", { class: "histogram", id: "histogram" },
    svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "group",
      "aria-label": `Matching events over the window: ${total} in all` }, bars),
    h("figcaption", {}, `${total} matching event${total === 1 ? "" : "s"} in the window · click a bar to zoom in`));
}

/** Calls over time, from a perf report's `overTime` slices (each `sliceSeconds` long): the
 * requests of each slice as a bar (4xx and 5xx in their own colours), and below it the
 * p50 / p95 / p99 latency as lines, broken where a slice had no call. Clicking a slice
 * calls `onPick(start, end)`. */
export function timeline({ overTime: slices, sliceSeconds }, onPick) {
  const W = 1000;
  const H = 80;
  const n = Math.max(1, slices.length);
  const sw = W / n;
  const end = (s) => new Date(new Date(s.start).getTime() + sliceSeconds * 1000).toISOString();
  const when = (t) => new Date(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const maxReq = Math.max(1, ...slices.map((s) => s.requests));
  const maxMs = Math.max(0.1, ...slices.map((s) => s.p99Ms));
  const total = slices.reduce((a, s) => a + s.requests, 0);
  const errors = slices.reduce((a, s) => a + s.errors5xx, 0);

  const y = (v, max) => H - (v / max) * (H - 4);
  const bars = slices.map((s, i) => {
    const part = (count, below, cls) => {
      if (!count) return null;
      const top = y(below + count, maxReq);
      return svg("rect", { x: i * sw + sw * 0.1, y: top, width: sw * 0.8, height: Math.max(1, y(below, maxReq) - top), class: cls });
    };
    const ok = s.requests - s.errors4xx - s.errors5xx;
    const label = `${when(s.start)}: ${s.requests} request${s.requests === 1 ? "" : "s"}, ${s.errors5xx} 5xx, ${s.errors4xx} 4xx` +
      (s.requests ? `; p50 ${ms(s.p50Ms)} ms, p95 ${ms(s.p95Ms)} ms, p99 ${ms(s.p99Ms)} ms` : "");
    return svg("g", { class: "bar", tabindex: s.requests ? 0 : -1, role: "button", "aria-label": `${label}; zoom to it`,
      onclick: () => onPick(s.start, end(s)),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          onPick(s.start, end(s));
        }
      },
    },
    svg("title", {}, label),
    svg("rect", { x: i * sw, y: 0, width: sw, height: H, class: "hit" }),
    part(ok, 0, "fill"),
    part(s.errors4xx, ok, "fill-4xx"),
    part(s.errors5xx, ok + s.errors4xx, "fill-5xx"));
  });

  // One polyline per run of slices with calls: no line is drawn across an idle gap.
  const lines = (key, cls) => {
    const runs = [];
    let run = [];
    slices.forEach((s, i) => {
      if (s.requests) run.push([(i + 0.5) * sw, y(s[key], maxMs)]);
      else if (run.length) {
        runs.push(run);
        run = [];
      }
    });
    if (run.length) runs.push(run);
    return runs.map((r) => r.length === 1
      ? svg("circle", { cx: r[0][0], cy: r[0][1], r: 3, class: cls })
      : svg("polyline", { points: r.map((p) => p.join(",")).join(" "), class: cls }));
  };

  const axis = (label) => h("div", { class: "axis" }, h("span", {}, label));
  const key = (cls, label) => h("span", { class: `key k-${cls}` }, label);
  return h("figure", { class: "timeline", id: "timeline" },
    axis(`Requests per slice (top: ${maxReq})`),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "group",
      "aria-label": `Requests over the window: ${total} in all, ${errors} with a 5xx status` }, bars),
    axis(`Latency (top: ${ms(maxMs)} ms)`),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", class: "latency",
      "aria-label": `Latency over the window: p99 at most ${ms(maxMs)} ms` },
    lines("p50Ms", "p50"), lines("p95Ms", "p95"), lines("p99Ms", "p99")),
    h("div", { class: "ticks" }, h("span", {}, when(slices[0]?.start ?? Date.now())), h("span", {}, when(end(slices[slices.length - 1] ?? { start: Date.now() })))),
    h("figcaption", {},
      key("fill", "2xx/3xx"), key("fill-4xx", "4xx"), key("fill-5xx", "5xx"), " · ",
      key("p50", "p50"), key("p95", "p95"), key("p99", "p99"),
      ` · each slice ${sliceSeconds >= 3600 ? `${(sliceSeconds / 3600).toFixed(1)} h` : `${Math.round(sliceSeconds / 60)} min`}; click one to zoom in`));
}
