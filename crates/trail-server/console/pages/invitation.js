// Accepting an invitation: someone new to Trail chooses their password; someone with an
// account gives its password, so only they can bring it into the org. Then they sign in.

import { post } from "../api.js";
import { h, fill } from "../dom.js";

export async function render(view, { token }) {
  document.title = "Accept your invitation · Trail";
  const error = h("p", { class: "form-error", role: "alert" });
  const field = (id, label, attrs) => [h("label", { for: id }, label), h("input", { id, name: id, ...attrs })];
  const [tl, tokenInput] = field("invitation", "Invitation", { type: "text", value: token, required: true, spellcheck: "false" });
  const [pl, pw] = field("new-password", "Choose a password", { type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const [al, again] = field("again", "The same again", { type: "password", autocomplete: "new-password", required: true });
  const hint = h("p", {}, "Choose the password you will sign in with (at least 12 characters).");
  const submit = h("button", { type: "submit", class: "primary" }, "Set my password");
  const existing = h("input", { id: "has-account", name: "has-account", type: "checkbox" });
  // With an account, one password field: the account's.
  const mode = () => {
    const has = existing.checked;
    pl.textContent = has ? "Your Trail password" : "Choose a password";
    pw.autocomplete = has ? "current-password" : "new-password";
    pw.minLength = has ? 0 : 12;
    al.hidden = again.hidden = has;
    again.required = !has;
    hint.textContent = has
      ? "Give the password of your Trail account: it joins the org that invited you."
      : "Choose the password you will sign in with (at least 12 characters).";
    submit.textContent = has ? "Join" : "Set my password";
  };
  existing.addEventListener("change", mode);
  const form = h("form", {
    class: "card signin",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      if (!existing.checked && pw.value !== again.value) {
        error.textContent = "The two passwords differ.";
        return;
      }
      submit.disabled = true;
      try {
        const r = await post("/v1/invitations/accept", { token: tokenInput.value.trim(), password: pw.value });
        fill(view, h("section", { class: "card signin", id: "accepted" },
          h("h1", {}, "Welcome to Trail"),
          h("p", {}, r.newAccount
            ? `Your password is set, ${r.email}. You are a member of ${r.org} (${r.role}).`
            : `${r.email}, your account is now a member of ${r.org} (${r.role}).`),
          h("a", { class: "button primary", href: "#/sign-in" }, "Sign in")));
      } catch (err) {
        error.textContent = err.message;
        // The invited email has an account: ask for its password instead.
        if (err.status === 401 && !existing.checked) {
          existing.checked = true;
          mode();
          pw.value = "";
          pw.focus();
        }
        submit.disabled = false;
      }
    },
  }, h("h1", {}, "Accept your invitation"),
  hint,
  h("div", { class: "fields" }, tl, tokenInput,
    h("label", { for: "has-account", class: "check" }, existing, " I already have a Trail account"),
    pl, pw, al, again), error, submit);
  fill(view, form);
  (token ? pw : tokenInput).focus();
}
