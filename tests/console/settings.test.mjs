// The console's settings, instances and performance pages, and who may see what.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, browser, api, signedIn, settled, shot } from "./harness.mjs";

let server;
let b;

before(async () => {
  server = await startServer();
  b = await browser();
});

after(async () => {
  await b?.close();
  await server?.stop();
});

test("an invited member accepts in the console, signs in, and without the Owner role is told so", async () => {
  const owner = await signedIn(b, server);
  await owner.goto(`${server.url}/#/orgs/default/settings`);
  await owner.locator("#invite-email").fill("dev@acme.io");
  await owner.locator("#invite-role").selectOption("member");
  await owner.getByRole("button", { name: "Invite" }).click();
  const link = await owner.locator(".secret-once code").innerText();
  assert.match(link, /#\/invitation\/inv_/);
  await owner.locator("#members tbody", { hasText: "dev@acme.io" }).waitFor();
  await shot(owner, "settings");

  const context = await b.newContext();
  const dev = await context.newPage();
  await dev.goto(link);
  await dev.locator("#new-password").fill("a long enough password");
  await dev.locator("#again").fill("a long enough password");
  await dev.getByRole("button", { name: "Set my password" }).click();
  await dev.locator("#accepted").waitFor();
  await dev.getByRole("link", { name: "Sign in" }).click();
  await dev.locator("#email").fill("dev@acme.io");
  await dev.locator("#password").fill("a long enough password");
  await dev.getByRole("button", { name: "Sign in" }).click();
  // A member holds logs:write alone: the page says what is needed, not an error.
  await dev.locator("#needs-role").waitFor();
  assert.match(await dev.locator("#needs-role").innerText(), /Owner/);
  await shot(dev, "member-without-the-role");

  // A second org invites the same address: the account joins it only with its password.
  await api(server, "POST", "/v1/orgs", { id: "second" });
  const invited = await api(server, "POST", "/v1/orgs/second/members", { email: "dev@acme.io", role: "admin" });
  await dev.goto(`${server.url}/#/invitation/${encodeURIComponent(invited.invitation.token)}`);
  await dev.locator("#new-password").fill("somebody else's password");
  await dev.locator("#again").fill("somebody else's password");
  await dev.getByRole("button", { name: "Set my password" }).click();
  // Told that the address has an account, and asked for its password.
  await dev.getByRole("button", { name: "Join" }).waitFor();
  assert.match(await dev.locator(".form-error").innerText(), /has a Trail account: give its password/);
  assert.equal(await dev.locator("#has-account").isChecked(), true);
  assert.equal(await dev.locator("#again").isHidden(), true);
  await shot(dev, "invitation-for-an-existing-account");
  await dev.locator("#new-password").fill("a long enough password");
  await dev.getByRole("button", { name: "Join" }).click();
  await dev.locator("#accepted").waitFor();
  assert.match(await dev.locator("#accepted").innerText(), /your account is now a member of second \(admin\)/);
  await context.close();
  await owner.close();
});

test("an API key is created (its secret shown once) and revoked", async () => {
  const page = await signedIn(b, server);
  await page.goto(`${server.url}/#/orgs/default/settings`);
  await page.locator("#key-name").fill("siem");
  await page.locator("#key-role").selectOption("owner");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.locator("#api-keys tbody", { hasText: "siem" }).waitFor();
  const secret = await page.locator(".secret-once code").innerText();
  assert.match(secret, /^key_[^:]+:.{40,}$/);
  // The list says who made each key.
  const listed = await (await fetch(`${server.url}/v1/orgs/default/api-keys`, { headers: { Authorization: `Bearer ${server.token}` } })).json();
  const maker = listed.items.find((k) => k.name === "siem").createdBy;
  assert.ok(maker);
  assert.ok((await page.locator("#api-keys tbody tr", { hasText: "siem" }).innerText()).includes(maker));
  // The key works, then is revoked from the page.
  const [id, pw] = secret.split(":");
  const basic = `Basic ${Buffer.from(`${id}:${pw}`).toString("base64")}`;
  assert.equal((await fetch(`${server.url}/v1/audit-log`, { headers: { Authorization: basic } })).status, 200);
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Revoke siem" }).click();
  await page.locator("#api-keys tbody", { hasText: "No API keys." }).waitFor();
  assert.equal((await fetch(`${server.url}/v1/audit-log`, { headers: { Authorization: basic } })).status, 401);
  await page.close();
});

test("instances have their own audit logs, and performance shows per-route latency", async () => {
  await api(server, "POST", "/v1/orgs/default/instances", { id: "argocd-prod", name: "Argo CD", kind: "argocd" });
  await api(server, "POST", "/v1/orgs/default/events", [
    { action: "synced", instance: "argocd-prod", actor: { id: "argo", type: "system" } },
    { action: "elsewhere", actor: { id: "x", type: "user" } },
  ]);
  const page = await signedIn(b, server);
  await page.getByRole("link", { name: "Instances" }).click();
  await page.getByRole("link", { name: "argocd-prod" }).click();
  await page.locator("#log tbody tr").first().waitFor();
  const rows = await page.locator("#log tbody").innerText();
  assert.ok(rows.includes("synced") && !rows.includes("elsewhere"), rows);
  await page.getByRole("link", { name: "Performance" }).click();
  await page.locator("#perf tbody tr").first().waitFor();
  assert.ok((await page.locator("#perf").innerText()).includes("POST /v1/orgs/:org/events"));
  // The chart over time: the calls just made are in its last slices, and a slice zooms in.
  const slices = page.locator("#timeline g.bar[tabindex='0']");
  assert.ok(await slices.count() >= 1, "a slice with calls");
  const label = await slices.last().getAttribute("aria-label");
  assert.match(label, /\d+ requests?, \d+ 5xx, \d+ 4xx; p50 [\d.]+ ms/);
  await shot(page, "performance");
  await slices.last().click();
  await page.waitForFunction(() => location.hash.includes("until="));
  await settled(page);
  assert.equal(await page.locator("#perf-window").inputValue(), "");
  await page.locator("#perf tbody tr").first().waitFor();
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the owner sets the retention and places and releases a legal hold, each recorded", async () => {
  const page = await signedIn(b, server);
  await page.goto(`${server.url}/#/orgs/default/settings`);
  await page.locator("#retention-days").waitFor();
  assert.match(await page.locator("#retention-summary").innerText(), /kept 365 days \(the default\)/);
  await page.locator("#retention-days").fill("30");
  await page.locator("#retention-save").click();
  await page.locator("#retention-summary", { hasText: "kept 30 days from" }).waitFor();
  page.once("dialog", (d) => d.accept());
  await page.locator("#legal-hold").check();
  await page.locator("#legal-hold:checked").waitFor();
  await shot(page, "settings-retention");
  let r = await api(server, "GET", "/v1/orgs/default/retention");
  assert.equal(r.retentionDays, 30);
  assert.equal(r.legalHold, true);
  page.once("dialog", (d) => d.accept());
  await page.locator("#legal-hold").uncheck();
  await page.locator("#legal-hold:not(:checked)").waitFor();
  await settled(page);
  r = await api(server, "GET", "/v1/orgs/default/retention");
  assert.equal(r.legalHold, false);
  // Each change is in the org's log, with what it changed.
  const log = await api(server, "GET", "/v1/orgs/default/audit-logs?objectType=retention&limit=10");
  const said = log.items.map((e) => e.details.message);
  assert.ok(said.includes("retention set to 30 days"), said.join("\n"));
  assert.ok(said.includes("legal hold placed: nothing is pruned"), said.join("\n"));
  assert.ok(said.includes("legal hold released"), said.join("\n"));
  assert.deepEqual(page.errors, []);
  await page.close();
});
