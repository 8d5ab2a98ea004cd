// Instances: each with its own Audit Logs (seed 000's instance level).

import { get, post, orgPath } from "../api.js";
import { h, fill } from "../dom.js";
import { holds } from "../app.js";
import { renderLog } from "./audit.js";
import { listTable, formError, day } from "./parts.js";

export async function render(view, { org, parts, params }) {
  if (parts[0]) {
    const instance = parts[0];
    if (!holds(org, "logs:read")) {
      fill(view, h("section", { class: "empty", id: "needs-role" }, h("h1", {}, `Instance ${instance}`),
        h("p", {}, "Reading audit logs needs the logs:read scope, which the ", h("strong", {}, "Owner"), " role holds.")));
      return null;
    }
    return renderLog(view, {
      org, instance, params,
      base: `/orgs/${encodeURIComponent(org)}/instances/${encodeURIComponent(instance)}`,
      title: `Audit Logs · ${instance}`,
    });
  }
  const { items } = await get(`${orgPath(org)}/instances`);
  const link = (i) => h("a", { href: `#/orgs/${encodeURIComponent(org)}/instances/${encodeURIComponent(i.id)}` }, i.id);
  const table = listTable("instances", [
    ["Instance", link], ["Name", (i) => i.name], ["Kind", (i) => i.kind], ["Added", (i) => day(i.createdAt)],
  ], items, "No instances yet.");
  fill(view, h("h1", {}, "Instances"),
    h("p", { class: "hint" }, "An instance is one deployment sending events to this org (an Argo CD, a cluster, a service). Each has its own audit log."),
    table,
    holds(org, "instances:manage") ? addForm(org) : null);
  return null;
}

function addForm(org) {
  const error = formError();
  const field = (id, label, attrs = {}) => h("label", { class: "quick" }, h("span", {}, label), h("input", { id, name: id, required: true, ...attrs }));
  return h("form", {
    class: "card inline-form", "aria-label": "Add an instance",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      const f = e.currentTarget;
      try {
        await post(`${orgPath(org)}/instances`, { id: f.elements["instance-id"].value.trim(), name: f.elements["instance-name"].value.trim(), kind: f.elements["instance-kind"].value.trim() });
        window.dispatchEvent(new HashChangeEvent("hashchange"));
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, h("h2", {}, "Add an instance"),
  h("div", { class: "quick-filters" }, field("instance-id", "Id", { pattern: "[a-z0-9][a-z0-9-]*", placeholder: "argocd-prod" }),
    field("instance-name", "Name"), field("instance-kind", "Kind", { placeholder: "argocd" }),
    h("button", { type: "submit", class: "primary" }, "Add")), error);
}

