// Accepting an invitation: the invitee chooses their password, then signs in.

import { post } from "../api.js";
import { h, fill } from "../dom.js";

export async function render(view, { token }) {
  document.title = "Accept your invitation · Trail";
  const error = h("p", { class: "form-error", role: "alert" });
  const field = (id, label, attrs) => [h("label", { for: id }, label), h("input", { id, name: id, ...attrs })];
  const [tl, tokenInput] = field("invitation", "Invitation", { type: "text", value: token, required: true, spellcheck: "false" });
  const [pl, pw] = field("new-password", "Choose a password", { type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const [al, again] = field("again", "The same again", { type: "password", autocomplete: "new-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Set my password");
  const form = h("form", {
    class: "card signin",
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      if (pw.value !== again.value) {
        error.textContent = "The two passwords differ.";
        return;
      }
      submit.disabled = true;
      try {
        const r = await post("/v1/invitations/accept", { token: tokenInput.value.trim(), password: pw.value });
        fill(view, h("section", { class: "card signin", id: "accepted" },
          h("h1", {}, "Welcome to Trail"),
          h("p", {}, `Your password is set, ${r.email}. You are a member of ${r.org}.`),
          h("a", { class: "button primary", href: "#/sign-in" }, "Sign in")));
      } catch (err) {
        error.textContent = err.message;
        submit.disabled = false;
      }
    },
  }, h("h1", {}, "Accept your invitation"),
  h("p", {}, "Choose the password you will sign in with (at least 12 characters)."),
  h("div", { class: "fields" }, tl, tokenInput, pl, pw, al, again), error, submit);
  fill(view, form);
  (token ? pw : tokenInput).focus();
}
