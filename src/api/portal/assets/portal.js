// The portal's script: calls the JSON API with the session cookie, and the page's CSRF token
// on every change. The page is rendered by the server; this adds what is interactive.
"use strict";
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  const csrf = { [meta("csrf-header")]: meta("csrf-token") };
  const tenant = document.getElementById("tenant")?.dataset.tenant;
  const base = tenant ? `/v1/tenants/${encodeURIComponent(tenant)}` : "";

  async function api(method, path, body) {
    const headers = { ...csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    const resp = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    return { status: resp.status, body: json };
  }

  // The API names the field an error concerns (`url`…, `filters`: …): show it there.
  function showError(form, message) {
    const prefix = form.dataset.prefix;
    const named = (message.match(/`(\w+)[`.]/) || message.match(/^(url)\b/) || [])[1];
    const field = named && document.getElementById(`${prefix}-${named}-error`);
    (field || document.getElementById(`${prefix}-error`)).textContent = message;
    const input = named && form.querySelector(`#${prefix}-${named}`);
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  // An endpoint form's values as the API takes them: the boxes ticked and the patterns typed.
  function endpointBody(form, editing) {
    const filters = [...form.querySelectorAll("input[name=filters]:checked")].map((c) => c.value)
      .concat(form.patterns.value.split(",").map((p) => p.trim()).filter(Boolean));
    const body = { url: form.url.value.trim(), filters };
    const description = form.description.value.trim();
    if (description || editing) body.description = description;
    const rate = form.rate_limit.value.trim();
    if (rate) body.rate_limit = Number(rate);
    else if (editing) body.rate_limit = null;
    const ordering = form.ordering_key.value.trim();
    if (ordering) body.ordering_key = ordering;
    else if (editing) body.ordering_key = null;
    // Chosen when adding only: an endpoint keeps its signing scheme.
    const signing = form.querySelector("input[name=signing]:checked");
    if (signing && !editing) body.signing = signing.value;
    return body;
  }

  function resetErrors(form) {
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function addRow(ep) {
    const table = document.querySelector("#endpoints tbody");
    table.querySelector("tr.empty")?.remove();
    const row = document.createElement("tr");
    row.dataset.id = ep.id;
    const cell = (html) => { const td = document.createElement("td"); td.append(...html); row.append(td); };
    const code = document.createElement("code"); code.textContent = ep.url;
    const small = document.createElement("small"); small.textContent = ep.id + (ep.description ? " — " + ep.description : "");
    cell([code, document.createElement("br"), small]);
    cell([document.createTextNode(ep.filters.join(", "))]);
    const health = document.createElement("span"); health.className = "ok"; health.textContent = "healthy";
    cell([health]);
    row.lastElementChild.className = "health";
    const actions = document.createElement("template");
    actions.innerHTML = document.getElementById("row-actions")?.innerHTML || "";
    const td = actions.content.querySelector("td");
    if (td) {
      td.querySelectorAll("button").forEach((b) => b.setAttribute("aria-label", `${b.textContent} ${ep.id}`));
      row.append(td);
    }
    table.append(row);
  }

  const form = document.getElementById("add-endpoint");
  form?.addEventListener("submit", async (e) => {
    e.preventDefault();
    resetErrors(form);
    const r = await api("POST", `${base}/endpoints`, endpointBody(form, false));
    if (r.status === 201) {
      addRow(r.body);
      const note = document.getElementById("add-done");
      note.hidden = false;
      const key = r.body.signing === "ed25519" ? "public key, which your receiver verifies with" : "signing secret";
      note.textContent = `Added ${r.body.id}. Its ${key} (shown once here; reveal it again from the endpoint): ${r.body.secret}`;
      form.reset();
    } else {
      showError(form, r.body?.error?.message || `The endpoint was not added (HTTP ${r.status}).`);
    }
  });

  // Row actions: disable or enable at once; delete only after a confirmation in place.
  const HEALTHY = ["ok", "healthy"], DISABLED = ["bad", "disabled"];
  function setHealth(row, [cls, text]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    row.querySelector("td.health").replaceChildren(span);
  }
  function rowError(row, message) {
    let el = row.querySelector(".row-error");
    if (!el) {
      el = document.createElement("span");
      el.className = "row-error field-error";
      el.setAttribute("role", "alert");
      row.querySelector("td.actions").append(el);
    }
    el.textContent = message;
  }
  // Cancelling a delete puts the row's buttons back and the focus on its Delete.
  function cancelDelete(row) {
    row.querySelector("td.actions").replaceChildren(...row.keptActions);
    row.querySelector("button[data-action=delete]")?.focus();
  }
  document.getElementById("endpoints")?.addEventListener("keydown", (e) => {
    const row = e.target.closest("tr");
    if (e.key === "Escape" && row?.querySelector("[data-action=confirm-delete]")) cancelDelete(row);
  });
  document.getElementById("endpoints")?.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr");
    const id = row.dataset.id;
    const path = `${base}/endpoints/${encodeURIComponent(id)}`;
    const action = button.dataset.action;
    if (action === "toggle") {
      const disabled = button.dataset.disabled === "true";
      const r = await api("PATCH", path, { disabled });
      if (r.status !== 200) return rowError(row, r.body?.error?.message || `HTTP ${r.status}`);
      setHealth(row, disabled ? DISABLED : HEALTHY);
      button.dataset.disabled = String(!disabled);
      button.textContent = disabled ? "Enable" : "Disable";
      button.setAttribute("aria-label", `${button.textContent} ${id}`);
    } else if (action === "delete") {
      const cell = button.closest("td");
      const kept = [...cell.childNodes];
      const ask = document.createElement("span");
      ask.setAttribute("role", "group");
      ask.setAttribute("aria-label", `Delete ${id}?`);
      ask.innerHTML = '<span class="confirm-text"></span> <button type="button" data-action="confirm-delete"></button> <button type="button" data-action="cancel-delete">Cancel</button>';
      ask.querySelector(".confirm-text").textContent = `Delete ${id}? Its deliveries stop at once.`;
      ask.querySelector("[data-action=confirm-delete]").textContent = "Yes, delete";
      cell.replaceChildren(ask);
      ask.querySelector("[data-action=confirm-delete]").focus();
      row.keptActions = kept;
    } else if (action === "cancel-delete") {
      cancelDelete(row);
    } else if (action === "confirm-delete") {
      const r = await api("DELETE", path);
      if (r.status !== 204) return rowError(row, r.body?.error?.message || `HTTP ${r.status}`);
      row.remove();
    }
  });

  // One endpoint's page: reveal and rotate its secret, send a test event.
  const endpoint = document.getElementById("tenant")?.dataset.endpoint;
  const epPath = endpoint ? `${base}/endpoints/${encodeURIComponent(endpoint)}` : "";
  const say = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
  document.getElementById("reveal-secret")?.addEventListener("click", async () => {
    const r = await api("GET", `${epPath}/secret`);
    if (r.status !== 200) return say("secret-status", r.body?.error?.message || `HTTP ${r.status}`);
    const code = document.getElementById("secret");
    code.textContent = r.body.secret;
    code.hidden = false;
  });
  document.getElementById("rotate-secret")?.addEventListener("click", async () => {
    const r = await api("POST", `${epPath}/secret/rotate`);
    if (r.status !== 200) return say("secret-status", r.body?.error?.message || `HTTP ${r.status}`);
    const code = document.getElementById("secret");
    code.textContent = r.body.secret;
    code.hidden = false;
    const ed25519 = document.querySelector("[data-signing=ed25519]");
    say("secret-status", ed25519
      ? "Rotated: a new key pair signs from now on (the public key above verifies it); the previous one signs beside it until the overlap ends."
      : "Rotated: the secret above signs from now on; the previous one signs beside it until the overlap ends.");
  });
  document.getElementById("test-form")?.addEventListener("submit", async (e) => {
    e.preventDefault();
    say("test-result", "Sending…");
    const type = e.target.type.value;
    const r = await api("POST", `${epPath}/test`, { type });
    if (r.status !== 200) return say("test-result", r.body?.error?.message || `HTTP ${r.status}`);
    const o = r.body;
    say("test-result", o.status
      ? `Sent ${type} (${o.event_id}): your endpoint answered HTTP ${o.status} in ${o.latency_ms} ms.`
      : `Sent ${type} (${o.event_id}): no answer: ${o.error} (after ${o.latency_ms} ms).`);
  });
  const edit = document.getElementById("edit-endpoint");
  edit?.addEventListener("submit", async (e) => {
    e.preventDefault();
    resetErrors(edit);
    const done = document.getElementById("edit-done");
    done.hidden = true;
    const r = await api("PATCH", epPath, endpointBody(edit, true));
    if (r.status !== 200) return showError(edit, r.body?.error?.message || `Not saved (HTTP ${r.status}).`);
    const ep = r.body;
    document.querySelector("h1 code").textContent = ep.url;
    say("summary", `${ep.id} — events: ${ep.filters.join(", ")} — signed with ${ep.signing}` +
      `${ep.ordering_key ? ` — ordered by ${ep.ordering_key}` : ""}${ep.disabled ? " — disabled" : ""}`);
    done.hidden = false;
    done.textContent = "Saved. Deliveries follow the change within a second.";
  });

  // Recent attempts, refreshed every few seconds while the page is open.
  const attempts = document.querySelector("#attempts tbody");
  const filter = document.getElementById("attempt-filter");
  let lastAttempts = [];
  function showAttempts() {
    const want = filter?.value || "all";
    const ok = (a) => a.status !== null && a.status >= 200 && a.status < 300;
    const rows = lastAttempts.filter((a) => want === "all" || (want === "ok") === ok(a));
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.innerHTML = '<td colspan="5"></td>';
      tr.firstChild.textContent = lastAttempts.length ? "No attempts match." : "No attempts yet.";
      attempts.replaceChildren(tr);
      return;
    }
    attempts.replaceChildren(...rows.map((a) => {
      const tr = document.createElement("tr");
      tr.className = ok(a) ? "attempt ok-row" : "attempt failed-row";
      const cells = [
        new Date(a.at).toLocaleString(),
        `${a.event_id} (attempt ${a.attempt})`,
        a.status !== null ? `HTTP ${a.status}` : (a.error || "no answer"),
        `${a.latency_ms} ms`,
        a.response || a.error || "",
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 2) { const s = document.createElement("span"); s.className = ok(a) ? "ok" : "bad"; s.textContent = text; td.append(s); }
        else if (i === 4) { const c = document.createElement("code"); c.textContent = text.slice(0, 200); td.append(c); }
        else td.textContent = text;
        tr.append(td);
      });
      return tr;
    }));
  }
  async function loadAttempts() {
    const r = await api("GET", `${epPath}/attempts`);
    if (r.status === 200) { lastAttempts = r.body.data; showAttempts(); }
  }
  if (attempts) {
    filter?.addEventListener("change", showAttempts);
    loadAttempts();
    setInterval(() => { if (!document.hidden) loadAttempts(); }, 2000);
  }

  // Dead letters: list, replay one, purge one, replay everything since a time.
  const dlq = document.querySelector("#dlq tbody");
  const writable = document.getElementById("tenant")?.dataset.writable === "true";
  async function loadDlq() {
    const r = await api("GET", `${base}/dlq?limit=250`);
    if (r.status !== 200) return say("dlq-status", r.body?.error?.message || `HTTP ${r.status}`);
    if (r.body.data.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.innerHTML = '<td colspan="5">No dead letters.</td>';
      return dlq.replaceChildren(tr);
    }
    dlq.replaceChildren(...r.body.data.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.id = d.id;
      const outcome = d.last_status !== null ? `HTTP ${d.last_status}` : (d.last_error || "no answer");
      [new Date(d.dead_at).toLocaleString(), `${d.event_id} (${d.event_type})`, d.endpoint_id,
       `${outcome} after ${d.attempts} attempts`].forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      });
      const td = document.createElement("td");
      td.className = "actions";
      if (writable) {
        for (const [action, label] of [["replay", "Replay"], ["purge", "Purge"]]) {
          const b = document.createElement("button");
          b.type = "button";
          b.dataset.action = action;
          b.textContent = label;
          b.setAttribute("aria-label", `${label} ${d.event_id}`);
          td.append(b, " ");
        }
      }
      tr.append(td);
      return tr;
    }));
  }
  if (dlq) {
    loadDlq();
    document.getElementById("dlq").addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-action]");
      if (!b) return;
      const id = b.closest("tr").dataset.id;
      const r = b.dataset.action === "replay"
        ? await api("POST", `${base}/dlq/replay`, { ids: [id] })
        : await api("DELETE", `${base}/dlq/${encodeURIComponent(id)}`);
      if (r.status >= 300) return say("dlq-status", r.body?.error?.message || `HTTP ${r.status}`);
      const kept = b.dataset.action === "replay" && r.body?.endpoint_deleted;
      say("dlq-status", b.dataset.action !== "replay" ? `Purged ${id}.`
        : kept ? `Kept ${id}: its endpoint was deleted, so there is nowhere to deliver it. Purge it to remove it.`
        : `Replayed ${id}: it is being delivered again.`);
      loadDlq();
    });
    document.getElementById("replay-since")?.addEventListener("submit", async (e) => {
      e.preventDefault();
      const local = e.target.since.value;
      if (!local) return say("dlq-status", "Pick a time first.");
      const r = await api("POST", `${base}/dlq/replay`, { since: new Date(local).toISOString().replace(/\.\d{3}Z$/, "Z") });
      if (r.status !== 200) return say("dlq-status", r.body?.error?.message || `HTTP ${r.status}`);
      const kept = r.body.endpoint_deleted ? ` ${r.body.endpoint_deleted} kept: their endpoint was deleted.` : "";
      say("dlq-status", `Replayed ${r.body.replayed} dead letters.${kept}`);
      loadDlq();
    });
  }

  window.webhookdPortal = { api };
  document.getElementById("logout")?.addEventListener("click", async () => {
    await api("POST", "/portal/logout");
    window.location.replace("/portal/");
  });
})();
