// Signing in: with email and password, or with a personal access token (the bootstrap
// owner's, from the first start). Either way the browser holds an HttpOnly session cookie,
// never the token.

import { post, setCsrf, ApiError } from "../api.js";
import { h, fill } from "../dom.js";

export async function render(view, { onSignedIn }) {
  document.title = "Sign in · Trail";
  const error = h("p", { class: "form-error", role: "alert", id: "signin-error" });
  let mode = "password";
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const token = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "pat_…" });
  const byPassword = h("div", { class: "fields" },
    h("label", { for: "email" }, "Email"), email,
    h("label", { for: "password" }, "Password"), password);
  const byToken = h("div", { class: "fields", hidden: true },
    h("label", { for: "token" }, "Personal access token"), token,
    h("p", { class: "hint" }, "The owner token `trail serve` printed on its first start (also in trail-data/bootstrap-token) works here."));
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Sign in with" },
    ...[["password", "Email and password"], ["token", "Access token"]].map(([m, label]) =>
      h("button", {
        type: "button", role: "tab", id: `with-${m}`, "aria-selected": String(m === mode),
        onclick: (e) => {
          mode = m;
          for (const t of tabs.querySelectorAll("[role=tab]")) t.setAttribute("aria-selected", String(t === e.currentTarget));
          byPassword.hidden = m !== "password";
          byToken.hidden = m !== "token";
          email.required = password.required = m === "password";
          token.required = m === "token";
          (m === "password" ? email : token).focus();
        },
      }, label)));
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", {
    class: "card signin",
    "aria-labelledby": "signin-title",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        const body = mode === "password"
          ? { email: email.value.trim(), password: password.value }
          : { token: token.value.trim() };
        const s = await post("/v1/session", body);
        setCsrf(s.csrfToken);
        password.value = token.value = "";
        onSignedIn();
      } catch (err) {
        error.textContent = err instanceof ApiError && err.status === 429
          ? `Too many attempts: ${err.message}`
          : err.message;
        submit.disabled = false;
      }
    },
  },
  h("h1", { id: "signin-title" }, "Sign in to Trail"), tabs, byPassword, byToken, error, submit);
  fill(view, form);
  email.focus();
}
