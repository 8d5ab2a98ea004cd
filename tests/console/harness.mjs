// What the console tests share: a real `trail serve` on a temporary data directory and a
// free port, headless Chromium (Debian's, through playwright-core), and screenshots kept as
// artifacts.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The `trail` binary under test: TRAIL_BIN, else the debug build. */
export const TRAIL = process.env.TRAIL_BIN ?? join(root, "target", "debug", "trail");
/** Where screenshots go (kept for a person to look at). */
export const SHOTS = process.env.TRAIL_SCREENSHOTS ?? join(root, "target", "console-screenshots");
mkdirSync(SHOTS, { recursive: true });

/** Starts `trail serve`; resolves to `{ url, token, data, stop() }` once it listens. */
export async function startServer(extra = []) {
  const data = mkdtempSync(join(tmpdir(), "trail-console-"));
  const child = spawn(TRAIL, ["serve", "--listen", "127.0.0.1:0", "--data", data, ...extra], {
    env: { ...process.env, TRAIL_LOG: "error" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`trail serve exited with ${code}`)));
    lines.on("line", (line) => {
      const m = /listening on (\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  const token = readFileSync(join(data, "bootstrap-token"), "utf8").trim();
  return {
    url,
    token,
    data,
    stop: () => new Promise((resolve) => {
      child.once("exit", resolve);
      child.kill("SIGTERM");
    }),
  };
}

/** Headless Chromium: CHROMIUM, else Debian's. */
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** Calls the API as `token` (a PAT). */
export async function api(server, method, path, body, token = server.token) {
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A page signed in with the bootstrap token, failing the test on any page error. */
export async function signedIn(b, server, { viewport } = {}) {
  const context = await b.newContext({ viewport: viewport ?? { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) errors.push(m.text());
  });
  page.errors = errors;
  await page.goto(`${server.url}/`);
  await page.getByRole("tab", { name: "Access token" }).click();
  await page.getByLabel("Personal access token").fill(server.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#log").waitFor();
  await settled(page);
  return page;
}

/** Waits until the page shows the route in its address bar (after a click that changed it). */
export const settled = (page) =>
  page.waitForFunction(() => document.getElementById("view")?.dataset.shown === location.hash);

export const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
