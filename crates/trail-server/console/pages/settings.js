// Settings: members and their roles (invite, change a role, remove), API keys and personal
// access tokens (make one: its secret is shown once; revoke), retention and legal hold.
// Each change is itself recorded in the org's log by the API.

import { get, post, patch, del, call, orgPath, seg } from "../api.js";
import { h, fill } from "../dom.js";
import { holds, session } from "../app.js";
import { listTable, secretOnce, formError, sure, day } from "./parts.js";

const ROLES = ["owner", "admin", "member"];

/** What the last change has to show once (a new secret), kept across the page's reload. */
let pending = null;

export async function render(view, { org }) {
  const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
  const sections = [];
  const out = { set: (node) => { pending = node; } };
  if (holds(org, "members:manage")) sections.push(await members(org, reload, out));
  if (holds(org, "keys:manage")) sections.push(await keys(org, reload, out));
  if (session.me?.actorType === "user" || session.me?.actorType === "pat") sections.push(await tokens(org, reload, out));
  if (holds(org, "logs:read") || holds(org, "retention:manage")) sections.push(await retention(org, reload));
  fill(view, h("h1", {}, "Settings"), h("div", { id: "shown-once" }, pending), ...sections);
  pending = null;
  return null;
}

async function members(org, reload, out) {
  const { items } = await get(`${orgPath(org)}/members`);
  const error = formError();
  const roleSelect = (m) => h("select", {
    "aria-label": `Role of ${m.email}`,
    onchange: async (e) => {
      try {
        await patch(`${orgPath(org)}/members/${seg(m.email)}`, { role: e.target.value });
        reload();
      } catch (err) {
        error.textContent = err.message;
        e.target.value = m.role;
      }
    },
  }, ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)));
  const remove = (m) => h("button", {
    type: "button", class: "danger", "aria-label": m.userId ? `Remove ${m.email}` : `Withdraw the invitation of ${m.email}`,
    onclick: async () => {
      const question = m.userId
        ? `Remove ${m.email} from ${org}? Their tokens stop working here at once.`
        : `Withdraw the invitation of ${m.email} to ${org}?`;
      if (!sure(question)) return;
      try {
        await del(`${orgPath(org)}/members/${seg(m.email)}`);
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, m.userId ? "Remove" : "Withdraw");
  const invite = h("form", {
    class: "inline-form", "aria-label": "Invite a member",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      const f = e.currentTarget;
      try {
        const r = await post(`${orgPath(org)}/members`, { email: f.elements["invite-email"].value.trim(), role: f.elements["invite-role"].value });
        const link = `${location.origin}/#/invitation/${encodeURIComponent(r.invitation.token)}`;
        out.set(secretOnce(`Invitation for ${r.email}`, link,
          `Send this link to ${r.email} alone: with it they join ${org} as ${r.role}, once, until ${new Date(r.invitation.expiresAt).toLocaleString()}, choosing a password if they are new to Trail or giving their account's if not.`));
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  },
  h("label", { class: "quick" }, h("span", {}, "Email"), h("input", { id: "invite-email", name: "invite-email", type: "email", required: true })),
  h("label", { class: "quick" }, h("span", {}, "Role"), h("select", { id: "invite-role", name: "invite-role" }, ROLES.map((r) => h("option", { value: r, selected: r === "member" }, r)))),
  h("button", { type: "submit", class: "primary" }, "Invite"));
  const columns = [
    ["Member", (m) => m.email],
    // An invitation's role is what it says: to change it, invite again.
    ["Role", (m) => (m.userId ? roleSelect(m) : m.role)],
    ["", (m) => (m.invitationExpiresAt ? h("span", { class: "badge", title: `until ${new Date(m.invitationExpiresAt).toLocaleString()}` }, "invited") : "")],
    ["", remove],
  ];
  return h("section", { class: "settings", "aria-labelledby": "members-title" },
    h("h2", { id: "members-title" }, "Members"),
    listTable("members", columns, items, "No members."),
    invite, error);
}

async function keys(org, reload, out) {
  const { items } = await get(`${orgPath(org)}/api-keys`);
  const live = items.filter((k) => !k.revokedAt);
  const error = formError();
  const revoke = (k) => h("button", {
    type: "button", class: "danger", "aria-label": `Revoke ${k.name}`,
    onclick: async () => {
      if (!sure(`Revoke API key ${k.name}? Whatever uses it stops at once.`)) return;
      try {
        await del(`${orgPath(org)}/api-keys/${seg(k.id)}`);
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, "Revoke");
  const create = h("form", {
    class: "inline-form", "aria-label": "Create an API key",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      const f = e.currentTarget;
      try {
        const k = await post(`${orgPath(org)}/api-keys`, {
          name: f.elements["key-name"].value.trim(),
          description: f.elements["key-description"].value.trim(),
          role: f.elements["key-role"].value,
        });
        out.set(secretOnce(`API key ${k.name}`, `${k.id}:${k.secret}`,
          "Use it as HTTP Basic credentials: the key id as the user name and the secret as the password (KEYID:SECRET for the trail command)."));
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  },
  h("label", { class: "quick" }, h("span", {}, "Name"), h("input", { id: "key-name", name: "key-name", required: true })),
  h("label", { class: "quick" }, h("span", {}, "What it is for"), h("input", { id: "key-description", name: "key-description" })),
  h("label", { class: "quick" }, h("span", {}, "Role"), h("select", { id: "key-role", name: "key-role" }, ROLES.map((r) => h("option", { value: r, selected: r === "member" }, r)))),
  h("button", { type: "submit", class: "primary" }, "Create key"));
  return h("section", { class: "settings", "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "API keys"),
    listTable("api-keys", [
      ["Name", (k) => k.name], ["Id", (k) => h("code", {}, k.id)], ["Scopes", (k) => k.scopes.join(" ")],
      // Who made it and when: after a stolen session, the keys made in it are found here.
      ["Made by", (k) => k.createdBy], ["Created", (k) => day(k.createdAt)],
      ["Expires", (k) => day(k.expiresAt)], ["", revoke],
    ], live, "No API keys."),
    create, error);
}

async function tokens(org, reload, out) {
  const { items } = await get(`${orgPath(org)}/tokens`);
  const live = items.filter((t) => !t.revokedAt);
  const error = formError();
  const revoke = (t) => h("button", {
    type: "button", class: "danger", "aria-label": `Revoke ${t.name}`,
    onclick: async () => {
      if (!sure(`Revoke personal access token ${t.name}?`)) return;
      try {
        await del(`${orgPath(org)}/tokens/${seg(t.id)}`);
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, "Revoke");
  const create = h("form", {
    class: "inline-form", "aria-label": "Create a personal access token",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      const f = e.currentTarget;
      try {
        const t = await post(`${orgPath(org)}/tokens`, {
          name: f.elements["token-name"].value.trim(),
          preset: f.elements["token-preset"].value,
          expiresIn: f.elements["token-expires"].value,
        });
        out.set(secretOnce(`Personal access token ${t.name}`, t.token,
          "Send it as Authorization: Bearer <token>, or save it with trail login --token."));
        reload();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  },
  h("label", { class: "quick" }, h("span", {}, "Name"), h("input", { id: "token-name", name: "token-name", required: true })),
  h("label", { class: "quick" }, h("span", {}, "Preset"), h("select", { id: "token-preset", name: "token-preset" },
    h("option", { value: "support-readonly" }, "support-readonly"), h("option", { value: "admin-full" }, "admin-full"))),
  h("label", { class: "quick" }, h("span", {}, "Expires in"), h("select", { id: "token-expires", name: "token-expires" },
    ["7d", "30d", "90d", "365d"].map((d) => h("option", { value: d, selected: d === "30d" }, d)))),
  h("button", { type: "submit", class: "primary" }, "Create token"));
  return h("section", { class: "settings", "aria-labelledby": "tokens-title" },
    h("h2", { id: "tokens-title" }, "Your personal access tokens"),
    listTable("tokens", [
      ["Name", (t) => t.name], ["Id", (t) => h("code", {}, t.id)],
      ["Orgs", (t) => (t.orgs === "all" ? "all yours" : t.orgs.join(", "))],
      ["Scopes", (t) => t.scopes.join(" ")], ["Expires", (t) => day(t.expiresAt)], ["", revoke],
    ], live, "No tokens."),
    create, error);
}

/** Retention: how long the org keeps its events once their week is archived, and the legal
 *  hold that stops all pruning. Owners (retention:manage) change them. */
async function retention(org, reload) {
  const r = await get(`${orgPath(org)}/retention`);
  const can = holds(org, "retention:manage");
  const error = formError();
  const put = async (body) => {
    error.textContent = "";
    try {
      await call("PUT", `${orgPath(org)}/retention`, body);
      reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const days = h("input", {
    id: "retention-days", name: "retention-days", type: "number", min: 1, max: r.maxRetentionDays,
    value: r.retentionDays, required: true, disabled: !can,
  });
  const form = h("form", {
    class: "inline-form", "aria-label": "Retention",
    onsubmit: (e) => { e.preventDefault(); put({ retentionDays: Number(days.value) }); },
  },
  h("label", { class: "quick" }, h("span", {}, "Keep events (days)"), days),
  can ? h("button", { type: "submit", class: "primary", id: "retention-save" }, "Save") : null,
  can && !r.default ? h("button", { type: "button", class: "quiet", onclick: () => put({ retentionDays: null }) }, "Use the default") : null);
  const hold = h("label", { class: "live" },
    h("input", { type: "checkbox", id: "legal-hold", checked: r.legalHold, disabled: !can,
      onchange: (e) => {
        const on = e.target.checked;
        if (!sure(on ? `Place ${org} under legal hold? Nothing of it is pruned until the hold is released.`
          : `Release the legal hold on ${org}? Events past retention are then pruned at the next run.`)) {
          e.target.checked = !on;
          return;
        }
        put({ legalHold: on });
      } }),
    " Legal hold: nothing is pruned while it is on");
  return h("section", { class: "settings", "aria-labelledby": "retention-title" },
    h("h2", { id: "retention-title" }, "Retention"),
    h("p", { class: "hint", id: "retention-summary" },
      `Events are kept ${r.retentionDays} days${r.default ? " (the default)" : ""} from the end of the week they were received in (at most ${r.maxRetentionDays}); `,
      "only events already in a stored weekly archive are pruned, and the log still verifies afterwards. ",
      r.prunedBelow > 0 ? `Seqs below ${r.prunedBelow} were pruned; their archives hold them.` : "Nothing has been pruned."),
    form, hold, error);
}
