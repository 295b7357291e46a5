// sparkvision page: plain JavaScript, no build step, no network access beyond this server.
// A classification or zero-shot model gives ranked labels (/v1/classify); a captioning model gives
// captions (/v1/caption), best first.
// Each image is posted on its own (the server batches concurrent requests into one model call),
// so results appear as soon as they are ready and one bad file never hides the others.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    options: $("options"),
    model: $("model"),
    modelInfo: $("model-info"),
    topK: $("top-k"),
    topKField: $("top-k-field"),
    labelsField: $("labels-field"),
    labels: $("candidate-labels"),
    keyField: $("key-field"),
    key: $("api-key"),
    drop: $("drop-zone"),
    fileInput: $("file-input"),
    clear: $("clear"),
    cameraOpen: $("camera-open"),
    camera: $("camera"),
    video: $("camera-video"),
    shoot: $("camera-shoot"),
    cameraClose: $("camera-close"),
    status: $("status"),
    results: $("results"),
    template: $("card-template"),
  };

  const MAX_PARALLEL = 8; // requests in flight from this page
  const MAX_BUSY_RETRIES = 30; // 503 "busy": the server is at its limits
  const LOAD_PATIENCE_MS = 10 * 60 * 1000; // 503 while a model loads or is built on first use
  // What a failed image means, in words; the server's own message is shown below it.
  const FAILURES = {
    unsupported_media_type: "This file is not an image the server can read.",
    unreadable_image: "This image is damaged or incomplete, so it cannot be decoded.",
    image_too_large: "This image has more pixels than this server accepts.",
    request_too_large: "This image has more pixels than this server accepts in one request.",
    upload_too_large: "This file is larger than this server accepts.",
    model_failed: "The model could not be loaded.",
    unknown_model: "The server does not know this model.",
    model_not_available: "This model is not built on the server.",
    busy: "The server stayed busy; try again in a moment.",
  };
  let models = [];
  let items = []; // {file, url, card}
  let running = 0;
  const waiting = [];
  let stream = null;

  function setStatus(text, isError = false) {
    els.status.textContent = text;
    els.status.classList.toggle("error", isError);
  }

  function headers() {
    const key = sessionStorage.getItem("sparkvision-api-key") || els.key.value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
    if (response.status === 401) {
      els.keyField.hidden = false;
    }
    return response;
  }

  function currentModel() {
    return models.find((m) => m.name === els.model.value);
  }

  function isCaptioning(model) {
    return Boolean(model && model.task === "captioning");
  }

  // The words for what the chosen model does to an image.
  function verbs(model = currentModel()) {
    return isCaptioning(model)
      ? { doing: "Captioning", done: "captioned", verb: "caption" }
      : { doing: "Classifying", done: "classified", verb: "classify" };
  }

  function describeModel() {
    const model = currentModel();
    if (!model) {
      els.modelInfo.textContent = "";
      return;
    }
    const parts = [model.family, model.task];
    if (model.num_classes) parts.push(`${model.num_classes} classes`);
    if (model.input_size) parts.push(`${model.input_size} px`);
    if (model.state === "not_built") parts.push("built on the server when first used");
    els.modelInfo.textContent = parts.filter(Boolean).join(" · ");
    const zeroShot = model.task === "zero-shot";
    els.labelsField.hidden = !zeroShot;
    els.topKField.hidden = isCaptioning(model);
    if (model.num_classes) els.topK.max = String(Math.min(model.num_classes, 20));
  }

  async function loadModels() {
    let response;
    try {
      response = await api("/v1/models");
    } catch (err) {
      setStatus(`Cannot reach the server: ${err.message}`, true);
      return false;
    }
    if (response.status === 401) {
      setStatus("This server needs an API key: enter it above.", true);
      return false;
    }
    if (!response.ok) {
      setStatus(`The server answered ${response.status} for the model list.`, true);
      return false;
    }
    const body = await response.json();
    models = body.models.filter((m) => m.available);
    const previous = els.model.value;
    const option = (m) => {
      const element = document.createElement("option");
      element.value = m.name;
      element.textContent = m.default ? `${m.name} (default)` : m.name;
      return element;
    };
    const ready = models.filter((m) => m.state !== "not_built");
    const toBuild = models.filter((m) => m.state === "not_built");
    const groups = [...ready.map(option)];
    if (toBuild.length) {
      const group = document.createElement("optgroup");
      group.label = "Built on first use";
      group.append(...toBuild.map(option));
      groups.push(group);
    }
    els.model.replaceChildren(...groups);
    els.model.value = models.some((m) => m.name === previous) ? previous : body.default;
    describeModel();
    return true;
  }

  async function waitUntilReady() {
    for (let attempt = 0; attempt < 600; attempt += 1) {
      try {
        const response = await fetch("/readyz");
        const body = await response.json();
        if (response.ok) {
          const ready = models.find((m) => m.name === body.model) || currentModel();
          setStatus(`Ready: model ${body.model}. Add images to ${verbs(ready).verb} them.`);
          return;
        }
        if (body.state === "failed") {
          setStatus(`The model failed to load: ${body.error || "see the server log"}`, true);
          return;
        }
        setStatus(`Loading model ${body.model}…`);
      } catch (err) {
        setStatus(`Cannot reach the server: ${err.message}`, true);
      }
      await sleep(1000);
    }
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // -- adding images ------------------------------------------------------------------------------
  function addFiles(fileList) {
    const files = Array.from(fileList || []).filter((f) => f && f.size !== undefined);
    if (!files.length) return;
    for (const file of files) {
      const url = URL.createObjectURL(file);
      const item = { file, url, card: makeCard(file, url) };
      items.push(item);
      els.results.append(item.card);
      schedule(item);
    }
    els.clear.disabled = false;
    setStatus(`${verbs().doing} ${files.length} image${files.length === 1 ? "" : "s"}…`);
  }

  function makeCard(file, url) {
    const card = els.template.content.firstElementChild.cloneNode(true);
    const img = card.querySelector("img");
    // A file the browser cannot show (not an image, damaged, or a format it lacks such as TIFF)
    // gets a plain "No preview" box instead of the broken-image icon.
    img.addEventListener("error", () => {
      img.hidden = true;
      card.querySelector(".no-preview").hidden = false;
    });
    img.src = url;
    img.alt = `Thumbnail of ${file.name || "pasted image"}`;
    card.querySelector(".name").textContent = file.name || "pasted image";
    card.setAttribute("aria-busy", "true");
    return card;
  }

  function schedule(item) {
    waiting.push(item);
    pump();
  }

  function pump() {
    while (running < MAX_PARALLEL && waiting.length) {
      const item = waiting.shift();
      running += 1;
      classify(item).finally(() => {
        running -= 1;
        if (!running && !waiting.length) summarise();
        pump();
      });
    }
  }

  function summarise() {
    const done = items.filter((i) => i.card.dataset.state === "done").length;
    const failed = items.filter((i) => i.card.dataset.state === "failed").length;
    const { done: word } = verbs();
    setStatus(`${done} image${done === 1 ? "" : "s"} ${word}` + (failed ? `, ${failed} failed.` : "."));
  }

  // -- classification -----------------------------------------------------------------------------
  async function classify(item) {
    const model = els.model.value;
    const params = new URLSearchParams();
    if (model) params.set("model", model);
    const info = models.find((m) => m.name === model);
    const captioning = isCaptioning(info);
    if (!captioning) {
      let k = parseInt(els.topK.value, 10);
      if (info && info.num_classes) k = Math.min(k, info.num_classes); // e.g. a 3-class model
      if (Number.isFinite(k) && k > 0) params.set("top_k", String(k));
      if (!els.labelsField.hidden && els.labels.value.trim()) {
        params.set("candidate_labels", els.labels.value.trim());
      }
    }
    const endpoint = captioning ? "/v1/caption" : "/v1/classify";
    const state = item.card.querySelector(".state");
    state.textContent = `${verbs(info).doing}…`;
    item.card.classList.remove("failed");
    item.card.querySelector(".labels").replaceChildren();
    item.card.querySelector(".captions").replaceChildren();
    item.card.querySelector(".meta").textContent = "";
    const started = performance.now();
    let busyRetries = 0;
    let built = false;
    for (;;) {
      const form = new FormData();
      form.append("file", item.file, item.file.name || "pasted.png");
      let response;
      try {
        response = await api(`${endpoint}?${params}`, { method: "POST", body: form });
      } catch (err) {
        return showError(item, `network error: ${err.message}`);
      }
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = { error: `the server answered ${response.status} without JSON` };
      }
      const loading = body.code === "model_loading" || body.code === "model_building";
      const patient = loading ? performance.now() - started < LOAD_PATIENCE_MS : busyRetries < MAX_BUSY_RETRIES;
      if (response.status === 503 && patient) {
        const wait = parseFloat(response.headers.get("Retry-After") || "1");
        if (body.code === "model_building") {
          built = true;
          state.textContent = `Building model ${model} on the server (first use)…`;
          setStatus(`Building model ${model} on the server; it is used as soon as it is ready.`);
        } else if (body.code === "model_loading") {
          state.textContent = `Waiting for model ${model} to load…`;
        } else {
          busyRetries += 1;
          state.textContent = "Server busy, retrying…";
        }
        await sleep(Math.max(0.2, Math.min(wait, 10)) * 1000);
        continue;
      }
      if (built) loadModels(); // the model is built now: no longer "built on first use"
      if (!response.ok) {
        const record = body.results && body.results[0];
        return showError(item, (record && record.error) || body.error || `HTTP ${response.status}`, body.code);
      }
      const record = body.results[0];
      if (record.error) return showError(item, record.error);
      if (body.task === "captioning") return showCaptions(item, body, record, performance.now() - started);
      return showResult(item, body, record, performance.now() - started);
    }
  }

  function showError(item, message, code) {
    const card = item.card;
    card.dataset.state = "failed";
    card.classList.add("failed");
    card.removeAttribute("aria-busy");
    card.querySelector(".state").textContent = FAILURES[code] || `Could not ${verbs().verb} this image.`;
    card.querySelector(".meta").textContent = message;
  }

  function showResult(item, body, record, elapsedMs) {
    const card = item.card;
    card.dataset.state = "done";
    card.removeAttribute("aria-busy");
    const top = record.labels[0];
    card.querySelector(".state").textContent = top ? `${shortLabel(top)}` : "No label above the threshold";
    const rows = record.labels.map((label, i) => labelRow(label, record.scores[i]));
    card.querySelector(".labels").replaceChildren(...rows);
    card.querySelector(".captions").hidden = true;
    const batch = body.batch_sizes && body.batch_sizes[0];
    card.querySelector(".meta").textContent =
      `${body.model} · ${Math.round(elapsedMs)} ms (server ${Math.round(body.elapsed_ms)} ms` +
      (batch > 1 ? `, batched with ${batch - 1} other${batch === 2 ? "" : "s"})` : ")");
  }

  // A captioning model's answer: the best caption as the card's headline, every caption listed.
  function showCaptions(item, body, record, elapsedMs) {
    const card = item.card;
    card.dataset.state = "done";
    card.removeAttribute("aria-busy");
    const captions = record.captions || [];
    card.querySelector(".state").textContent = captions[0] || "The model wrote an empty caption";
    const rows = captions.map((text) => {
      const li = document.createElement("li");
      li.className = "caption";
      li.textContent = text;
      return li;
    });
    const list = card.querySelector(".captions");
    list.replaceChildren(...rows);
    list.hidden = rows.length < 2; // one caption is already the headline
    card.querySelector(".labels").replaceChildren();
    card.querySelector(".meta").textContent =
      `${body.model} · ${Math.round(elapsedMs)} ms (server ${Math.round(body.elapsed_ms)} ms)`;
  }

  function shortLabel(label) {
    return label.split(",")[0];
  }

  function labelRow(label, score) {
    const pct = (100 * score).toFixed(1);
    const li = document.createElement("li");
    li.className = "label-row";
    const head = document.createElement("div");
    head.className = "label-head";
    const name = document.createElement("span");
    name.className = "label-name";
    name.textContent = label;
    name.title = label;
    const value = document.createElement("span");
    value.className = "label-pct";
    value.textContent = `${pct}%`;
    head.append(name, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, Math.min(100, 100 * score))}%`;
    bar.append(fill);
    li.append(head, bar);
    return li;
  }

  // -- camera -------------------------------------------------------------------------------------
  async function openCamera() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (err) {
      setStatus(`The camera is not available: ${err.message}`, true);
      return;
    }
    els.video.srcObject = stream;
    els.camera.hidden = false;
    els.shoot.focus();
  }

  function closeCamera() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    els.video.srcObject = null;
    els.camera.hidden = true;
    els.cameraOpen.focus();
  }

  function shoot() {
    const { videoWidth: w, videoHeight: h } = els.video;
    if (!w || !h) return;
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").drawImage(els.video, 0, 0, w, h);
    canvas.toBlob((blob) => {
      if (!blob) return;
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      addFiles([new File([blob], `camera-${stamp}.jpg`, { type: "image/jpeg" })]);
    }, "image/jpeg", 0.92);
  }

  // -- wiring -------------------------------------------------------------------------------------
  els.fileInput.addEventListener("change", () => {
    addFiles(els.fileInput.files);
    els.fileInput.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    els.drop.addEventListener(type, (event) => {
      event.preventDefault();
      els.drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    els.drop.addEventListener(type, () => els.drop.classList.remove("dragging"));
  }
  els.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation(); // the window's drop handler below must not add the files again
    addFiles(event.dataTransfer.files);
  });
  // Dropping outside the zone must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer) addFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  els.clear.addEventListener("click", () => {
    for (const item of items) URL.revokeObjectURL(item.url);
    items = [];
    waiting.length = 0;
    els.results.replaceChildren();
    els.clear.disabled = true;
    setStatus("Cleared. Add images to classify them.");
  });
  els.model.addEventListener("change", () => {
    describeModel();
    if (items.length) {
      const { doing } = verbs();
      setStatus(`${doing} ${items.length} image${items.length === 1 ? "" : "s"} again with ${els.model.value}…`);
      items.forEach(schedule);
    }
  });
  els.key.addEventListener("change", async () => {
    sessionStorage.setItem("sparkvision-api-key", els.key.value.trim());
    if (await loadModels()) waitUntilReady();
  });
  els.options.addEventListener("submit", (event) => event.preventDefault());
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext) {
    els.cameraOpen.hidden = false;
    els.cameraOpen.addEventListener("click", openCamera);
    els.cameraClose.addEventListener("click", closeCamera);
    els.shoot.addEventListener("click", shoot);
  }

  (async () => {
    if (await loadModels()) await waitUntilReady();
  })();
})();
