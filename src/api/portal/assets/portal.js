// The portal's script: calls the JSON API with the session cookie, and the page's CSRF token
// on every change.
"use strict";
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  const csrf = { [meta("csrf-header")]: meta("csrf-token") };
  async function api(method, path, body) {
    const headers = { ...csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const resp = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    return { status: resp.status, body: text ? JSON.parse(text) : null };
  }
  window.webhookdPortal = { api };
  document.getElementById("logout")?.addEventListener("click", async () => {
    await api("POST", "/portal/logout");
    window.location.replace("/portal/");
  });
})();
