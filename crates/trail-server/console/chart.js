// Charts as SVG, drawn from data: the histogram of matching events over the window.

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
