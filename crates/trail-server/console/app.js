// The console: who is signed in, the org switcher, the navigation, and the router that
// shows one page at a time. Pages are modules under pages/; the navigation is data
// (`PAGES`), so a new view is one more entry and one more module.

import { ApiError, get, del, setCsrf } from "./api.js";
import { h, fill, announce } from "./dom.js";

/** The views of an org, in the navigation's order. `needs` is the scope without which the
 * page explains what is missing instead of failing. */
export const PAGES = [
  { id: "audit", title: "Audit Logs", module: "./pages/audit.js", needs: "logs:read" },
  { id: "instances", title: "Instances", module: "./pages/instances.js" },
  { id: "perf", title: "Performance", module: "./pages/perf.js", needs: "logs:read" },
  { id: "settings", title: "Settings", module: "./pages/settings.js" },
];

/** What the console knows of the caller: `GET /v1/me`, or null when signed out. */
export const session = { me: null };

let cleanup = null;

/** The orgs the caller belongs to, with the scopes they hold in each. */
export function myOrgs() {
  return session.me?.orgs ?? [];
}

/** Whether the caller holds `scope` in `org`. */
export function holds(org, scope) {
  return myOrgs().some((o) => o.id === org && o.scopes.includes(scope));
}

/** Goes to a hash route: `go("/orgs/acme/audit", {actor: "x"})`. */
export function go(path, params) {
  const q = params ? new URLSearchParams(params).toString() : "";
  location.hash = `#${path}${q ? `?${q}` : ""}`;
}

/** The current route: its path parts and its query parameters. */
function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

/** Loads who is signed in; null if nobody is. */
export async function loadSession() {
  try {
    session.me = await get("/v1/me");
    setCsrf(session.me.csrfToken);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    session.me = null;
    setCsrf(null);
  }
  return session.me;
}

function currentOrg(parts) {
  const orgs = myOrgs().map((o) => o.id);
  if (parts[0] === "orgs" && parts[1]) return parts[1];
  const saved = localStorage.getItem("trail.org");
  return orgs.includes(saved) ? saved : orgs[0] ?? session.me?.org ?? null;
}

function header(org, page) {
  const head = document.getElementById("top");
  if (!session.me) {
    fill(head, h("a", { class: "brand", href: "#/" }, "Trail"));
    return;
  }
  const switcher = h(
    "select",
    {
      id: "org-switcher",
      "aria-label": "Organization",
      onchange: (e) => go(`/orgs/${encodeURIComponent(e.target.value)}/${page ?? "audit"}`),
    },
    myOrgs().map((o) => h("option", { value: o.id, selected: o.id === org }, o.id)),
  );
  const nav = h(
    "nav",
    { "aria-label": "Views" },
    h(
      "ul",
      {},
      PAGES.map((p) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              href: `#/orgs/${encodeURIComponent(org)}/${p.id}`,
              "aria-current": p.id === page ? "page" : false,
            },
            p.title,
          ),
        ),
      ),
    ),
  );
  const signOut = h(
    "button",
    {
      type: "button",
      class: "quiet",
      onclick: async () => {
        try {
          await del("/v1/session");
        } catch (e) {
          // Ended already: signed out either way.
        }
        session.me = null;
        setCsrf(null);
        go("/sign-in");
      },
    },
    "Sign out",
  );
  fill(
    head,
    h("a", { class: "brand", href: `#/orgs/${encodeURIComponent(org)}/audit` }, "Trail"),
    h("label", { class: "org" }, h("span", { class: "visually-hidden" }, "Organization"), switcher),
    nav,
    h("span", { class: "who", title: session.me.actorType }, session.me.actor),
    signOut,
  );
}

async function show() {
  const view = document.getElementById("view");
  const shown = location.hash;
  view.setAttribute("aria-busy", "true");
  try {
    await render(view);
  } finally {
    // What is on screen is this route's (for assistive technology, and for tests).
    if (location.hash === shown) {
      view.setAttribute("aria-busy", "false");
      view.dataset.shown = shown;
    }
  }
}

async function render(view) {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const { parts, params } = route();
  announce("");
  try {
    if (parts[0] === "invitation") {
      header(null, null);
      const m = await import("./pages/invitation.js");
      await m.render(view, { token: parts[1] ?? "" });
      return;
    }
    if (!session.me && !(await loadSession())) {
      header(null, null);
      const m = await import("./pages/signin.js");
      await m.render(view, { onSignedIn: () => show() });
      return;
    }
    if (parts[0] === "sign-in") {
      go("/");
      return;
    }
    const org = currentOrg(parts);
    if (!org) {
      header(null, null);
      fill(view, h("section", { class: "empty" }, h("h1", {}, "No organization"),
        h("p", {}, "You are not a member of any organization. Ask an owner to invite you.")));
      return;
    }
    // `#/settings/audit` (seed 001's route) is the Audit Logs of the current org.
    if (parts[0] !== "orgs" || !parts[2]) {
      location.replace(`#/orgs/${encodeURIComponent(org)}/audit${params.size ? `?${params}` : ""}`);
      return;
    }
    localStorage.setItem("trail.org", org);
    const page = PAGES.find((p) => p.id === parts[2]);
    header(org, page?.id);
    if (!page) {
      fill(view, h("section", { class: "empty" }, h("h1", {}, "Not found"),
        h("p", {}, "This console has no such page.")));
      return;
    }
    document.title = `${page.title} · ${org} · Trail`;
    if (!myOrgs().some((o) => o.id === org)) {
      fill(view, h("section", { class: "empty" }, h("h1", {}, page.title),
        h("p", {}, `You are not a member of ${org}.`)));
      return;
    }
    if (page.needs && !holds(org, page.needs)) {
      fill(view, h("section", { class: "empty", id: "needs-role" }, h("h1", {}, page.title),
        h("p", {}, `Reading ${page.title.toLowerCase()} needs the ${page.needs} scope, which the `,
          h("strong", {}, "Owner"), ` role holds. Ask an owner of ${org} to make you an owner.`)));
      return;
    }
    const m = await import(page.module);
    cleanup = (await m.render(view, { org, parts: parts.slice(3), params })) ?? null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session.me = null;
      go("/sign-in");
      return;
    }
    fill(view, h("section", { class: "error", role: "alert" }, h("h1", {}, "Something went wrong"),
      h("p", {}, e.message)));
  }
}

window.addEventListener("hashchange", show);
show();
