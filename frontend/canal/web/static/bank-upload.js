// Data bank: large files go up in parts through the resumable upload API, so a dropped
// connection costs one part, not the whole file. A form opts in with data-bank-upload;
// smaller files (and browsers without fetch) use the plain multipart form post. While parts
// are going up, "Cancel upload" stops them and discards the upload on the server (its
// reserved space is free at once). Forms with data-confirm ask before they post.
(function () {
  "use strict";
  const RETRIES = 4;

  async function json(response) {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  async function send(url, options) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fetch(url, options);
      } catch (error) {
        if (error.name === "AbortError" || attempt >= RETRIES) throw error;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  async function upload(form, file, signal, running) {
    const api = form.dataset.api;
    const headers = { "X-CSRF-Token": form.querySelector("input[name=_csrf]").value };
    const status = form.querySelector("[data-bank-status]");
    const bar = form.querySelector("progress");
    const key = `bank-upload:${api}:${form.dataset.file || form.dataset.folder}:${file.name}:${file.size}:${file.lastModified}`;
    running.key = key;
    let state = null;
    const saved = localStorage.getItem(key);
    if (saved) {
      const found = await send(`${api}/uploads/${saved}`, { headers, signal });
      if (found.ok) state = await found.json();
    }
    if (!state) {
      const start = { name: file.name, size: file.size };
      if (form.dataset.folder) start.folder_id = form.dataset.folder;
      if (form.dataset.file) start.file_id = form.dataset.file;
      state = await json(await send(`${api}/uploads`, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json" },
        body: JSON.stringify(start),
        signal,
      }));
      localStorage.setItem(key, state.id);
    }
    running.id = state.id;
    const done = new Set(state.received);
    bar.hidden = false;
    bar.max = state.parts;
    bar.value = done.size;
    for (let index = 0; index < state.parts; index++) {
      if (done.has(index)) continue;
      const part = file.slice(index * state.part_size, (index + 1) * state.part_size);
      await json(await send(`${api}/uploads/${state.id}/parts/${index}`, {
        method: "PUT", headers, body: part, signal,
      }).then((r) => (r.status === 204 ? new Response("{}", { status: 200 }) : r)));
      bar.value = index + 1;
      status.textContent = `${Math.round((100 * (index + 1)) / state.parts)}%`;
    }
    running.completing = true; // past this point the file is being judged: no cancelling
    form.querySelector("[data-bank-cancel]").hidden = true;
    const made = await json(await send(`${api}/uploads/${state.id}/complete`, {
      method: "POST", headers,
    }));
    localStorage.removeItem(key);
    window.location.assign(`${form.dataset.base}/files/${made.id}`);
  }

  async function cancel(form, running) {
    running.controller.abort();
    const status = form.querySelector("[data-bank-status]");
    if (running.key) localStorage.removeItem(running.key);
    if (running.id) {
      const headers = { "X-CSRF-Token": form.querySelector("input[name=_csrf]").value };
      // 404: it was already gone (expired, or cancelled elsewhere) — the goal is reached.
      await fetch(`${form.dataset.api}/uploads/${running.id}`, { method: "DELETE", headers });
    }
    form.querySelector("progress").hidden = true;
    form.querySelector("[data-bank-cancel]").hidden = true;
    form.querySelector("button[type=submit]").disabled = false;
    status.textContent = status.dataset.cancelled;
    form.querySelector("input[type=file]").focus(); // the button that had focus is hidden now
  }

  document.addEventListener("submit", (event) => {
    const asking = event.target.closest("form[data-confirm]");
    if (asking && !window.confirm(asking.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    const form = event.target.closest("form[data-bank-upload]");
    if (!form || !window.fetch) return;
    const file = form.querySelector("input[type=file]").files[0];
    if (!file || file.size <= Number(form.dataset.chunkAbove)) return;
    event.preventDefault();
    const status = form.querySelector("[data-bank-status]");
    const stop = form.querySelector("[data-bank-cancel]");
    const submit = form.querySelector("button[type=submit]");
    const running = { controller: new AbortController(), id: null, key: null, completing: false };
    status.textContent = "…";
    submit.disabled = true;
    stop.hidden = false;
    stop.onclick = () => {
      if (!running.completing) cancel(form, running).catch((error) => { status.textContent = error.message; });
    };
    upload(form, file, running.controller.signal, running).catch((error) => {
      if (error.name === "AbortError") return; // cancelled: cancel() says so
      submit.disabled = false;
      stop.hidden = true;
      status.textContent = error.message; // the server's message, in the page's language
    });
  });
})();
