// The console's Audit Logs, in headless Chromium against a real `trail serve`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, browser, api, signedIn, settled, shot } from "./harness.mjs";

let server;
let b;

before(async () => {
  server = await startServer();
  b = await browser();
  await api(server, "POST", "/v1/orgs/default/events", [
    { action: "deleted", actor: { id: "sarah@acme.io", type: "user" },
      object: { type: "custom_role", id: { kind: "Cluster", name: "dev-team" } },
      details: { actionType: "DELETE", message: "Resource deleted", patch: "" } },
    { action: "updated", actor: { id: "alice@acme.io", type: "user" },
      object: { type: "application", id: "web-app" },
      details: { actionType: "UPDATE", message: "Sync policy changed", patch: "{\"syncPolicy\":{\"automated\":true},\"old\":null}" } },
    { action: "call", category: "api", actor: { id: "ops", type: "break_glass" },
      request: { method: "GET", route: "GET /v1/tenants/:id", status: 503, latencyMs: 4,
        bodySha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" } },
  ]);
});

after(async () => {
  await b?.close();
  await server?.stop();
});

test("signing in with a token shows the org's log, newest first, break-glass rows marked", async () => {
  const page = await signedIn(b, server);
  const rows = page.locator("#log tbody tr");
  await assert.doesNotReject(rows.first().waitFor());
  const text = await page.locator("#log tbody").innerText();
  for (const s of ["sarah@acme.io", "alice@acme.io", "Resource deleted", "dev-team"]) assert.ok(text.includes(s), s);
  assert.equal(await page.locator("#log tbody tr.break-glass").count(), 1);
  assert.equal(await page.locator("#org-switcher").inputValue(), "default");
  await shot(page, "audit-logs");
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the query box filters by actor on the server, and the URL restores the view", async () => {
  const page = await signedIn(b, server);
  await page.locator("#query").fill("actor:alice@acme.io");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=actor%3Aalice/);
  await settled(page);
  await page.locator("#log tbody tr").first().waitFor();
  const rows = await page.locator("#log tbody tr").allInnerTexts();
  assert.ok(rows.length >= 1 && rows.every((r) => r.includes("alice@acme.io")), rows.join("\n"));
  // A reload (or a shared link) shows the same view.
  const url = page.url();
  const again = await page.context().newPage();
  await again.goto(url);
  await settled(again);
  await again.locator("#log tbody tr").first().waitFor();
  assert.equal(await again.locator("#query").inputValue(), "actor:alice@acme.io");
  assert.ok((await again.locator("#log tbody").innerText()).includes("alice@acme.io"));
  // A bad query is shown where it is.
  await page.locator("#query").fill("nosuchkey:x");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("#query-error").getByText("unknown key").waitFor();
  assert.equal(await page.locator("#query").getAttribute("aria-invalid"), "true");
  await page.close();
  await again.close();
});

test("the quick filter for route finds the recorded call", async () => {
  const page = await signedIn(b, server);
  await page.locator("#f-route").fill("GET /v1/tenants/:id");
  await page.locator("#f-route").press("Enter");
  await page.waitForURL(/route=/);
  await settled(page);
  await page.locator("#log tbody tr").first().waitFor();
  const rows = await page.locator("#log tbody tr").allInnerTexts();
  assert.equal(rows.length, 1, rows.join("\n"));
  assert.ok(rows[0].includes("ops"));
  await page.close();
});

test("a row opens its record with the body's digest and a verified mark", async () => {
  const page = await signedIn(b, server);
  await page.locator("#f-route").fill("GET /v1/tenants/:id");
  await page.locator("#f-route").press("Enter");
  await page.waitForURL(/route=/);
  await settled(page);
  await page.locator("#log tbody tr").first().click();
  const dialog = page.locator("#record");
  await dialog.waitFor();
  assert.equal(await page.locator("#body-digest").innerText(),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  await page.locator("#verify.ok").waitFor();
  assert.match(await page.locator("#verify").innerText(), /Verified/);
  await shot(page, "record-verified");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the mark fails for an event whose proof does not match", async () => {
  const page = await signedIn(b, server);
  // The server's answer is altered on the way: one hash of the proof flipped.
  await page.route("**/v1/orgs/default/events/*", async (route) => {
    const resp = await route.fetch();
    const body = await resp.json();
    if (body.inclusion?.proof?.length) {
      const p = body.inclusion.proof[0];
      body.inclusion.proof[0] = (p[0] === "0" ? "1" : "0") + p.slice(1);
    } else if (body.inclusion) {
      body.inclusion.treeSize += 1;
    }
    await route.fulfill({ response: resp, json: body });
  });
  await page.locator("#log tbody tr").first().click();
  await page.locator("#verify.failed").waitFor();
  assert.match(await page.locator("#verify").innerText(), /Not verified/);
  await shot(page, "record-not-verified");
  await page.close();
});

test("live tail adds an event ingested while it is on", async () => {
  const page = await signedIn(b, server);
  await page.locator("#live").check();
  await page.waitForURL(/live=1/);
  await settled(page);
  await page.locator("#log tbody tr").first().waitFor();
  await page.getByText("Live tail on").waitFor();
  await api(server, "POST", "/v1/orgs/default/events", [
    { action: "rotated", actor: { id: "bob@acme.io", type: "user" }, object: { type: "secret", id: "db-password" } },
  ]);
  await page.locator("#log tbody tr.new", { hasText: "bob@acme.io" }).waitFor({ timeout: 10000 });
  await page.close();
});

test("the console is usable at a phone's width", async () => {
  const page = await signedIn(b, server, { viewport: { width: 390, height: 844 } });
  await page.locator("#log tbody tr").first().waitFor();
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the page is ${width} px wide`);
  await shot(page, "audit-logs-phone");
  await page.close();
});

test("the viewer's own calls can be left out", async () => {
  const page = await signedIn(b, server);
  await page.locator("#log tbody tr").first().waitFor();
  const before = await page.locator("#log tbody").innerText();
  assert.ok(before.includes("listAuditLogs"), before);
  await page.locator("#hide-own").check();
  await page.waitForURL(/hideOwn=1/);
  await settled(page);
  await page.locator("#log tbody tr").first().waitFor();
  const rows = await page.locator("#log tbody").innerText();
  assert.ok(!rows.includes("listAuditLogs") && !rows.includes("whoAmI"), rows);
  assert.ok(rows.includes("sarah@acme.io"), rows);
  await page.close();
});

test("a histogram shows the matches over the window, and a bar zooms to its slice", async () => {
  const page = await signedIn(b, server);
  await page.locator("#histogram").waitFor();
  assert.match(await page.locator("#histogram figcaption").innerText(), /\d+ matching events? in the window/);
  await page.locator("#histogram .bar[tabindex='0']").last().click();
  await page.waitForURL(/until=/);
  await settled(page);
  assert.equal(await page.locator("#window").inputValue(), "custom");
  await page.locator("#log tbody tr").first().waitFor();
  await shot(page, "audit-logs-zoomed");
  await page.close();
});

test("the filtered view exports as CSV, every match and nothing else", async () => {
  const page = await signedIn(b, server);
  await page.locator("#query").fill("actor:sarah@acme.io");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=actor/);
  await settled(page);
  const [file] = await Promise.all([page.waitForEvent("download"), page.locator("#export-csv").click()]);
  const { readFileSync } = await import("node:fs");
  const text = readFileSync(await file.path(), "utf8");
  const lines = text.trim().split("\n");
  assert.ok(lines[0].startsWith("timestamp,receivedAt,seq,org,"), lines[0]);
  assert.equal(lines.length, 2, text);
  assert.ok(lines[1].includes("sarah@acme.io") && lines[1].includes("Resource deleted"), lines[1]);
  await page.close();
});

test("the export buttons pull every match through the SIEM export, oldest first", async () => {
  const page = await signedIn(b, server);
  await page.locator("#query").fill("category:app");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=category/);
  await settled(page);
  const [file] = await Promise.all([page.waitForEvent("download"), page.locator("#export-ndjson").click()]);
  const { readFileSync } = await import("node:fs");
  const records = readFileSync(await file.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(records.length >= 2, JSON.stringify(records));
  assert.ok(records.every((r) => r.category === "app"));
  const seqs = records.map((r) => r.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "oldest first, by seq");
  assert.match(await page.locator(".export-status").innerText(), /\d+ events? exported/);
  const [cef] = await Promise.all([page.waitForEvent("download"), page.locator("#export-cef").click()]);
  assert.ok(readFileSync(await cef.path(), "utf8").startsWith("CEF:0|Trail|Trail|"));
  await page.close();
});

test("collapse repeats shows a run of identical events as one row with its count", async () => {
  const same = { action: "synced", actor: { id: "argo-bot", type: "api_key" },
    object: { type: "application", id: { kind: "Application", name: "guestbook" } },
    details: { message: "Sync succeeded" } };
  await api(server, "POST", "/v1/orgs/default/events", [same, same, same, same]);
  const page = await signedIn(b, server);
  await page.locator("#query").fill("actor:argo-bot");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=actor/);
  await settled(page);
  assert.equal(await page.locator("#log tbody tr").count(), 4);
  await page.locator("#collapse").check();
  await page.waitForURL(/collapse=1/);
  await settled(page);
  await page.locator("#log tbody tr .repeats").waitFor();
  assert.equal(await page.locator("#log tbody tr").count(), 1);
  assert.equal((await page.locator("#log tbody tr .repeats").innerText()).trim(), "×4");
  assert.ok(await page.locator("#live").isDisabled(), "the live tail shows every event, so it waits");
  await shot(page, "audit-logs-collapsed");
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the Archive button lists the weeks and downloads the current one as a ZIP", async () => {
  const page = await signedIn(b, server);
  await page.locator("#log tbody tr").first().waitFor();
  await page.locator("#archive-button").click();
  const dialog = page.locator("#archive");
  await dialog.locator("#archives tr.current").waitFor();
  const week = (await dialog.locator("#archives tr.current th").innerText()).trim();
  assert.match(week, /^\d{4}-W\d{2}$/);
  await shot(page, "audit-logs-archive");
  const [file] = await Promise.all([page.waitForEvent("download"),
    dialog.getByRole("link", { name: `Download ${week} (partial)` }).click()]);
  assert.equal(file.suggestedFilename(), `default-${week}-partial.zip`);
  const { readFileSync } = await import("node:fs");
  const zip = readFileSync(await file.path());
  assert.equal(zip.subarray(0, 4).toString("hex"), "504b0304", "a ZIP");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("markup in events is shown as text, and no inline script runs", async () => {
  const markup = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
  await api(server, "POST", "/v1/orgs/default/events", [
    { action: "xss.probe", actor: { id: markup, type: "user" },
      object: { type: "repo", id: markup },
      details: { message: markup, patch: markup } },
  ]);
  const page = await signedIn(b, server);
  await page.locator("#query").fill("action:xss.probe");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/q=action/);
  await settled(page);
  const row = page.locator("#log tbody tr").first();
  await row.waitFor();
  assert.ok((await page.locator("#log tbody").innerText()).includes("<img src=x"));
  await row.click();
  await page.locator("#record").waitFor();
  assert.ok((await page.locator("#record").innerText()).includes("<script>"));
  await shot(page, "record-with-markup");
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator("img[src='x'], #log script, #record script").count(), 0);
  assert.deepEqual(page.errors, []);
  // The policy itself: a script put into the page inline does not run, and is reported
  // (within five seconds: a policy that let it run would report nothing).
  const violated = await page.evaluate(() => new Promise((resolve) => {
    document.addEventListener("securitypolicyviolation", (e) => resolve(e.effectiveDirective), { once: true });
    setTimeout(() => resolve("no violation reported"), 5000);
    const s = document.createElement("script");
    s.textContent = "window.__xss = 3";
    document.body.append(s);
  }));
  assert.match(violated, /^script-src/);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await page.close();
});
