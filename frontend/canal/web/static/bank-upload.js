// Data bank: large files go up in parts through the resumable upload API, so a dropped
// connection costs one part, not the whole file. A form opts in with data-bank-upload;
// smaller files (and browsers without fetch) use the plain multipart form post.
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
        if (attempt >= RETRIES) throw error;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  async function upload(form, file) {
    const api = form.dataset.api;
    const headers = { "X-CSRF-Token": form.querySelector("input[name=_csrf]").value };
    const status = form.querySelector("[data-bank-status]");
    const bar = form.querySelector("progress");
    const key = `bank-upload:${api}:${form.dataset.file || form.dataset.folder}:${file.name}:${file.size}:${file.lastModified}`;
    let state = null;
    const saved = localStorage.getItem(key);
    if (saved) {
      const found = await send(`${api}/uploads/${saved}`, { headers });
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
      }));
      localStorage.setItem(key, state.id);
    }
    const done = new Set(state.received);
    bar.hidden = false;
    bar.max = state.parts;
    bar.value = done.size;
    for (let index = 0; index < state.parts; index++) {
      if (done.has(index)) continue;
      const part = file.slice(index * state.part_size, (index + 1) * state.part_size);
      await json(await send(`${api}/uploads/${state.id}/parts/${index}`, {
        method: "PUT", headers, body: part,
      }).then((r) => (r.status === 204 ? new Response("{}", { status: 200 }) : r)));
      bar.value = index + 1;
      status.textContent = `${Math.round((100 * (index + 1)) / state.parts)}%`;
    }
    const made = await json(await send(`${api}/uploads/${state.id}/complete`, {
      method: "POST", headers,
    }));
    localStorage.removeItem(key);
    window.location.assign(`${form.dataset.base}/files/${made.id}`);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-bank-upload]");
    if (!form || !window.fetch) return;
    const file = form.querySelector("input[type=file]").files[0];
    if (!file || file.size <= Number(form.dataset.chunkAbove)) return;
    event.preventDefault();
    const status = form.querySelector("[data-bank-status]");
    status.textContent = "…";
    upload(form, file).catch((error) => {
      status.textContent = error.message; // the server's message, in the page's language
    });
  });
})();
