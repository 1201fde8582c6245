// The clip console: watch a stream's live DVR with hls.js, mark in and out from the player's
// position mapped to wall-clock time through EXT-X-PROGRAM-DATE-TIME, cut through the API, and
// list the stream's clips with their posters, countdowns and links.
//
// Data from the API (stream and clip names above all) only ever reaches the page as text:
// textContent and attributes, never innerHTML. The API key lives in sessionStorage (this tab
// only) and travels in the Authorization header, never in a URL.
"use strict";

(() => {
  const KEY_STORE = "packager.apiKey";
  const CLIPS_EVERY_MS = 2000;
  const $ = (id) => document.getElementById(id);

  const el = {
    keyForm: $("key-form"), key: $("api-key"), forget: $("forget-key"), intro: $("intro"),
    message: $("message"), status: $("status"), workspace: $("workspace"),
    stream: $("stream"), refreshStreams: $("refresh-streams"), streamInfo: $("stream-info"),
    player: $("player"), scrub: $("scrub"), rangeMarker: $("range-marker"), clock: $("clock"),
    playPause: $("play-pause"), goLive: $("go-live"),
    markIn: $("mark-in"), markOut: $("mark-out"), inTime: $("in-time"), outTime: $("out-time"),
    span: $("span"), cutForm: $("cut-form"), clipName: $("clip-name"), expiry: $("expiry"),
    vodRequired: $("vod-required"), frameAccurate: $("frame-accurate"), cut: $("cut-button"),
    clips: $("clips"), clipCount: $("clip-count"), noClips: $("no-clips"),
    template: $("clip-template"),
  };

  const state = {
    key: sessionStorage.getItem(KEY_STORE),
    streamId: null,
    hls: null,
    markIn: null, // wall-clock ms
    markOut: null,
    skewMs: 0, // server clock minus ours, from the API's Date headers
    cards: new Map(), // clip id -> {li, clip, hls, posterUrl}
    clipsTimer: null,
    loadGeneration: 0,
    relinkedAt: 0,
  };

  // ---- messages ------------------------------------------------------------------------

  function showError(text) {
    el.message.textContent = text;
    el.message.hidden = false;
  }

  function clearError() {
    el.message.hidden = true;
    el.message.textContent = "";
  }

  function say(text) {
    el.status.textContent = text;
  }

  // What a person should read for each answer the API may give.
  const EXPLAIN = {
    400: "The server refused a value",
    401: "The API key was not accepted",
    403: "Not allowed",
    404: "Not found",
    409: "Nothing to cut there",
    413: "Too large",
    422: "That moment is no longer in the DVR",
    425: "Not ready yet",
    429: "Too many clips or streams",
    503: "The server is busy; try again in a moment",
    507: "The server's memory budget is full",
  };

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(`${EXPLAIN[status] || "The server answered " + status} (${status}): ${detail}`);
      this.status = status;
      this.code = code;
    }
  }

  function serverNow() {
    return Date.now() + state.skewMs;
  }

  async function api(path, options = {}) {
    const headers = { Authorization: `apikey ${state.key}` };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method: options.method || "GET",
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "network", `cannot reach the packager (${err.message})`);
    }
    const date = Date.parse(resp.headers.get("Date") || "");
    if (Number.isFinite(date)) {
      const skew = date - Date.now();
      // A Date header has whole seconds: only a real difference of clocks is worth using.
      state.skewMs = Math.abs(skew) > 1500 ? skew : 0;
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const detail = (body && (body.detail || body.error)) || resp.statusText || "no detail";
      throw new ApiError(resp.status, body && body.error, String(detail));
    }
    return body;
  }

  function report(err) {
    showError(err instanceof ApiError ? err.message : `Something went wrong: ${err}`);
    if (err instanceof ApiError && err.status === 401) {
      el.key.focus();
    }
  }

  // ---- times ---------------------------------------------------------------------------

  const two = (n) => String(n).padStart(2, "0");

  function clockText(ms) {
    const d = new Date(ms);
    const tenths = Math.floor(d.getMilliseconds() / 100);
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${tenths}`;
  }

  function seconds(value) {
    return `${value.toFixed(1)} s`;
  }

  function countdown(totalSeconds) {
    const s = Math.max(0, Math.floor(totalSeconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
  }

  // The wall-clock time (ms) of a position on the player's timeline: the fragment holding it
  // gives its program-date-time, plus how far into the fragment the position is.
  function wallClockAt(t) {
    const hls = state.hls;
    const details = hls && hls.latestLevelDetails;
    const frags = details ? details.fragments.filter((f) => f.programDateTime !== null) : [];
    if (frags.length) {
      let lo = 0;
      let hi = frags.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (frags[mid].start <= t) lo = mid;
        else hi = mid - 1;
      }
      const frag = frags[lo];
      return frag.programDateTime + (t - frag.start) * 1000;
    }
    if (hls && hls.playingDate) return hls.playingDate.getTime() + (t - el.player.currentTime) * 1000;
    // Safari's own HLS player maps its timeline to dates itself.
    const start = el.player.getStartDate ? el.player.getStartDate().getTime() : NaN;
    return Number.isFinite(start) ? start + t * 1000 : null;
  }

  // ---- connecting ----------------------------------------------------------------------

  async function connect(key) {
    state.key = key;
    clearError();
    say("Connecting…");
    let streams;
    try {
      streams = await api("/streams");
    } catch (err) {
      say("");
      report(err);
      if (err.status === 401) forgetKey(false);
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    el.key.value = "";
    el.key.placeholder = "connected";
    el.forget.hidden = false;
    el.intro.hidden = true;
    el.workspace.hidden = false;
    say(`Connected: ${streams.length} stream${streams.length === 1 ? "" : "s"}.`);
    fillStreams(streams);
    el.stream.focus();
  }

  function forgetKey(announce = true) {
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    el.forget.hidden = true;
    el.key.placeholder = "";
    el.workspace.hidden = true;
    el.intro.hidden = false;
    stopStream();
    if (announce) say("The key is forgotten.");
  }

  function fillStreams(streams) {
    const keep = state.streamId;
    el.stream.replaceChildren();
    for (const s of streams) {
      const option = document.createElement("option");
      option.value = s.id;
      option.textContent = s.name === s.id ? s.id : `${s.name} (${s.id})`;
      el.stream.append(option);
    }
    if (!streams.length) {
      el.streamInfo.textContent = "No streams yet: create one with POST /streams and push to it.";
      stopStream();
      return;
    }
    const chosen = streams.some((s) => s.id === keep) ? keep : streams[0].id;
    el.stream.value = chosen;
    if (chosen !== keep) openStream(chosen);
  }

  async function refreshStreams() {
    try {
      fillStreams(await api("/streams"));
    } catch (err) {
      report(err);
    }
  }

  // ---- watching ------------------------------------------------------------------------

  function stopStream() {
    state.loadGeneration += 1;
    if (state.hls) state.hls.destroy();
    state.hls = null;
    el.player.removeAttribute("src");
    el.player.load();
    clearTimeout(state.clipsTimer);
    state.streamId = null;
    for (const id of [...state.cards.keys()]) removeCard(id);
    setMark("in", null);
    setMark("out", null);
  }

  async function openStream(id) {
    stopStream();
    clearError();
    state.streamId = id;
    const generation = state.loadGeneration;
    let stream;
    try {
      stream = await api(`/streams/${encodeURIComponent(id)}`);
    } catch (err) {
      report(err);
      return;
    }
    if (generation !== state.loadGeneration) return;
    const name = stream.name === stream.id ? stream.id : `${stream.name} (${stream.id})`;
    const rungs = stream.renditions.map((r) => `${r.height}p`).join(", ");
    el.streamInfo.textContent = stream.dvr.end === null
      ? `${name}: no media in its DVR yet.`
      : `${name}: ${rungs}; DVR ${seconds(stream.dvr.end - stream.dvr.start)} of ` +
        `${stream.dvr_duration} s${stream.live ? ", live" : ""}.`;
    refreshClips();
    if (stream.dvr.end === null) return;
    if (!stream.live_hls) {
      showError("This server cannot sign live links (it has no playback secret).");
      return;
    }
    play(stream.live_hls, generation);
  }

  function play(url, generation) {
    const video = el.player;
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls({ backBufferLength: 90, enableWorker: true });
      state.hls = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal || generation !== state.loadGeneration) return;
        const status = data.response && data.response.code;
        if (status === 403 && Date.now() - state.relinkedAt > 60000) {
          // The signed link ran out (they last a few hours): ask the API for a new one, once
          // a minute at most, so a link that cannot work does not loop.
          state.relinkedAt = Date.now();
          openStream(state.streamId);
          return;
        }
        showError(`Playback failed (${data.type}: ${data.details}${status ? ", " + status : ""}).`);
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        video.play().catch(() => {});
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      video.play().catch(() => {});
    } else {
      showError("This browser cannot play HLS (no Media Source Extensions).");
    }
  }

  function seekable() {
    const r = el.player.seekable;
    return r.length ? [r.start(0), r.end(r.length - 1)] : null;
  }

  function seekTo(t) {
    const range = seekable();
    if (!range) return;
    el.player.currentTime = Math.min(Math.max(t, range[0]), range[1]);
    showPosition();
  }

  let scrubbing = false;

  function showPosition() {
    const video = el.player;
    const range = seekable();
    if (range && !scrubbing) {
      el.scrub.min = String(range[0]);
      el.scrub.max = String(range[1]);
      el.scrub.value = String(video.currentTime);
    }
    const wall = wallClockAt(video.currentTime);
    if (wall === null) {
      el.clock.textContent = "–";
      el.scrub.removeAttribute("aria-valuetext");
    } else {
      const behind = Math.max(0, (serverNow() - wall) / 1000);
      const text = `${clockText(wall)} · ${seconds(behind)} behind now`;
      el.clock.textContent = text;
      el.scrub.setAttribute("aria-valuetext", text);
    }
    el.playPause.textContent = video.paused ? "Play" : "Pause";
    drawMarks(range);
  }

  // The marked range over the scrubber, where it lies in the window now.
  function drawMarks(range) {
    const marker = el.rangeMarker;
    if (!range || state.markIn === null || range[1] <= range[0]) {
      marker.hidden = true;
      return;
    }
    const startWall = wallClockAt(range[0]);
    if (startWall === null) {
      marker.hidden = true;
      return;
    }
    const toPos = (wall) => range[0] + (wall - startWall) / 1000;
    const from = toPos(state.markIn);
    const to = state.markOut === null ? from : toPos(state.markOut);
    const span = range[1] - range[0];
    const left = Math.min(Math.max((from - range[0]) / span, 0), 1);
    const right = Math.min(Math.max((to - range[0]) / span, 0), 1);
    marker.style.left = `${left * 100}%`;
    marker.style.width = `max(3px, ${(right - left) * 100}%)`;
    marker.hidden = false;
  }

  // ---- marking and cutting -------------------------------------------------------------

  function setMark(which, wall) {
    const output = which === "in" ? el.inTime : el.outTime;
    if (which === "in") state.markIn = wall;
    else state.markOut = wall;
    output.textContent = wall === null ? "–" : clockText(wall);
    if (wall === null) delete output.dataset.ms;
    else output.dataset.ms = String(wall);
    const { markIn, markOut } = state;
    if (markIn !== null && markOut !== null) {
      el.span.textContent = markOut > markIn
        ? `${seconds((markOut - markIn) / 1000)} marked.`
        : "Out comes before in: mark again.";
    } else if (markIn !== null || markOut !== null) {
      el.span.textContent = markIn === null ? "Now mark in." : "Now mark out.";
    } else {
      el.span.textContent = "Mark in and out on the player.";
    }
    drawMarks(seekable());
  }

  function mark(which) {
    const wall = wallClockAt(el.player.currentTime);
    if (wall === null) {
      showError("The player has no position yet: wait for the video to start.");
      return;
    }
    clearError();
    setMark(which, wall);
    say(`Marked ${which} at ${clockText(wall)}.`);
  }

  let cutting = false;

  async function cut() {
    if (cutting || !state.streamId) return;
    const { markIn, markOut } = state;
    if (markIn === null || markOut === null) {
      showError("Mark in and out first (the buttons, or the I and O keys).");
      return;
    }
    if (markOut <= markIn) {
      showError("The out mark comes before the in mark: mark them again.");
      return;
    }
    const body = { start: markIn / 1000, duration: (markOut - markIn) / 1000 };
    const name = el.clipName.value.trim();
    if (name) body.name = name;
    if (el.expiry.value) body.expiration = Math.floor(serverNow() / 1000) + Number(el.expiry.value);
    if (el.vodRequired.checked) body.vod_required = true;
    // The API may not know it yet: sent only when asked for.
    if (el.frameAccurate.checked) body.frame_accurate = true;
    cutting = true;
    el.cut.disabled = true;
    clearError();
    say("Cutting…");
    try {
      const clip = await api(`/streams/${encodeURIComponent(state.streamId)}/clip_recording`, {
        method: "POST",
        body,
      });
      say(`Clip cut: ${seconds(clip.duration_precise)} from ${clockText(clip.start_precise * 1000)}.`);
      upsertCard(clip, true);
      refreshClips();
    } catch (err) {
      say("");
      report(err);
    } finally {
      cutting = false;
      el.cut.disabled = false;
    }
  }

  // ---- clips ---------------------------------------------------------------------------

  async function refreshClips() {
    clearTimeout(state.clipsTimer);
    const id = state.streamId;
    if (!id) return;
    try {
      const clips = await api(`/streams/${encodeURIComponent(id)}/clip_recording`);
      if (id !== state.streamId) return;
      const seen = new Set();
      for (const clip of clips) {
        seen.add(clip.id);
        upsertCard(clip, false);
      }
      for (const clipId of [...state.cards.keys()]) {
        if (!seen.has(clipId)) removeCard(clipId);
      }
      countClips();
    } catch (err) {
      if (err.status === 401 || err.status === 404) report(err);
    }
    if (id === state.streamId) {
      state.clipsTimer = setTimeout(refreshClips, document.hidden ? 4 * CLIPS_EVERY_MS : CLIPS_EVERY_MS);
    }
  }

  function countClips() {
    const n = state.cards.size;
    el.clipCount.textContent = n ? `(${n})` : "";
    el.noClips.hidden = n > 0;
  }

  function upsertCard(clip, fresh) {
    let card = state.cards.get(clip.id);
    if (!card) {
      const li = el.template.content.firstElementChild.cloneNode(true);
      li.dataset.clipId = clip.id;
      card = { li, clip, hls: null, posterUrl: null, posterTries: 0, posterTimer: null };
      state.cards.set(clip.id, card);
      li.querySelector(".play").addEventListener("click", () => togglePlay(card));
      li.querySelector(".copy-hls").addEventListener("click", () => copy(card, "hls_master", "HLS"));
      li.querySelector(".copy-mp4").addEventListener("click", () => copy(card, "mp4_master", "MP4"));
      // Newest first, as a producer looks for the one just cut (ISO times sort as text).
      const after = [...el.clips.children].find((other) => {
        const shown = state.cards.get(other.dataset.clipId);
        return shown && shown.clip.created_at < clip.created_at;
      });
      el.clips.insertBefore(li, after || null);
      loadPoster(card);
    }
    card.clip = clip;
    if (fresh) {
      for (const c of state.cards.values()) c.li.classList.toggle("new", c === card);
    }
    const li = card.li;
    li.querySelector(".clip-name").textContent = clip.name || `Clip ${clip.id.slice(0, 8)}`;
    const badge = li.querySelector(".state");
    badge.textContent = clip.state;
    badge.dataset.state = clip.state;
    li.querySelector(".duration").textContent = seconds(clip.duration_precise);
    li.querySelector(".clip-when").textContent =
      `${clockText(clip.start_precise * 1000)} – ` +
      `${clockText((clip.start_precise + clip.duration_precise) * 1000)}` +
      (clip.note ? ` · ${clip.note}` : "") +
      (clip.vod_error ? ` · ${clip.vod_error}` : "");
    const download = li.querySelector(".download");
    if (clip.state === "growing") {
      // Its MP4 exists once the clip is complete (425 before).
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
      download.title = "The MP4 is ready when the clip is complete.";
    } else {
      download.href = clip.mp4_master;
      download.setAttribute("download", "");
      download.removeAttribute("aria-disabled");
      download.removeAttribute("title");
    }
    tickCard(card);
    countClips();
  }

  function tickCard(card) {
    const left = card.clip.expiration - serverNow() / 1000;
    card.li.querySelector(".expires").textContent =
      left > 0 ? `expires in ${countdown(left)}` : "expired";
  }

  function removeCard(id) {
    const card = state.cards.get(id);
    if (!card) return;
    if (card.hls) card.hls.destroy();
    clearTimeout(card.posterTimer);
    if (card.posterUrl) URL.revokeObjectURL(card.posterUrl);
    card.li.remove();
    state.cards.delete(id);
    countClips();
  }

  // Fetched rather than set as <img src>: a clip with no frame yet answers 425 with
  // Retry-After, which an <img> cannot tell from a failure.
  async function loadPoster(card) {
    const note = card.li.querySelector(".poster-note");
    card.posterTries += 1;
    let resp;
    try {
      resp = await fetch(card.clip.poster);
    } catch (_) {
      resp = null;
    }
    if (!state.cards.has(card.clip.id)) return;
    if (resp && resp.ok) {
      card.posterUrl = URL.createObjectURL(await resp.blob());
      const img = card.li.querySelector(".poster");
      img.src = card.posterUrl;
      img.alt = `First frame of ${card.li.querySelector(".clip-name").textContent}`;
      note.textContent = "";
      return;
    }
    if (resp && resp.status === 404) {
      note.textContent = "No poster.";
      return;
    }
    note.textContent = "Poster comes with the first frame…";
    const retry = resp && Number(resp.headers.get("Retry-After"));
    const wait = retry > 0 ? retry * 1000 : Math.min(30000, 1000 * card.posterTries);
    if (card.posterTries < 60) card.posterTimer = setTimeout(() => loadPoster(card), wait);
  }

  function togglePlay(card) {
    const li = card.li;
    const media = li.querySelector(".clip-media");
    const button = li.querySelector(".play");
    const existing = media.querySelector("video");
    if (existing) {
      if (card.hls) card.hls.destroy();
      card.hls = null;
      existing.remove();
      li.querySelector(".poster").hidden = false;
      li.classList.remove("playing");
      button.textContent = "Play";
      return;
    }
    const video = document.createElement("video");
    video.controls = true;
    video.muted = true;
    video.playsInline = true;
    video.className = "clip-player";
    video.setAttribute("aria-label", `Clip ${li.querySelector(".clip-name").textContent}`);
    li.querySelector(".poster").hidden = true;
    media.prepend(video);
    li.classList.add("playing");
    button.textContent = "Close player";
    const url = card.clip.hls_master;
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls({ enableWorker: true });
      card.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) showError(`The clip did not play (${data.type}: ${data.details}).`);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else {
      video.src = url;
      video.play().catch(() => {});
    }
  }

  async function copy(card, field, label) {
    const url = card.clip[field];
    const note = card.li.querySelector(".copied");
    try {
      await navigator.clipboard.writeText(url);
    } catch (_) {
      // No clipboard permission (an old browser, a page not focused): the classic way.
      const area = document.createElement("textarea");
      area.value = url;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.append(area);
      area.select();
      const done = document.execCommand("copy");
      area.remove();
      if (!done) {
        note.textContent = `Copy this ${label} link: ${url}`;
        return;
      }
    }
    note.textContent = `${label} link copied.`;
  }

  // ---- wiring --------------------------------------------------------------------------

  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = el.key.value.trim();
    if (!key) {
      showError("Enter the API key (the --api-keys of the packager; `demo` with --demo).");
      el.key.focus();
      return;
    }
    connect(key);
  });
  el.forget.addEventListener("click", () => forgetKey());
  el.refreshStreams.addEventListener("click", refreshStreams);
  el.stream.addEventListener("change", () => openStream(el.stream.value));

  el.player.addEventListener("timeupdate", showPosition);
  el.player.addEventListener("seeked", showPosition);
  el.player.addEventListener("play", showPosition);
  el.player.addEventListener("pause", showPosition);
  el.scrub.addEventListener("pointerdown", () => { scrubbing = true; });
  el.scrub.addEventListener("pointerup", () => { scrubbing = false; });
  el.scrub.addEventListener("change", () => { scrubbing = false; });
  el.scrub.addEventListener("input", () => seekTo(Number(el.scrub.value)));

  el.playPause.addEventListener("click", () => {
    if (el.player.paused) el.player.play().catch(() => {});
    else el.player.pause();
  });
  for (const [id, delta] of [["back-10", -10], ["back-1", -1], ["fwd-1", 1], ["fwd-10", 10]]) {
    $(id).addEventListener("click", () => seekTo(el.player.currentTime + delta));
  }
  el.goLive.addEventListener("click", () => {
    const live = state.hls && state.hls.liveSyncPosition;
    const range = seekable();
    seekTo(Number.isFinite(live) ? live : range ? range[1] : el.player.currentTime);
    el.player.play().catch(() => {});
  });

  el.markIn.addEventListener("click", () => mark("in"));
  el.markOut.addEventListener("click", () => mark("out"));
  el.cutForm.addEventListener("submit", (event) => {
    event.preventDefault();
    cut();
  });

  // Enter cuts from anywhere but a control that has its own use for it (a button, a link,
  // a list); I and O mark, except while typing.
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (el.workspace.hidden) return;
    const target = event.target;
    const tag = target.tagName;
    const typing = (tag === "INPUT" && !["checkbox", "range"].includes(target.type))
      || tag === "SELECT" || tag === "TEXTAREA";
    if (event.key === "Enter") {
      if (["BUTTON", "A", "SELECT", "TEXTAREA", "SUMMARY"].includes(tag)) return;
      if (el.keyForm.contains(target)) return;
      if (tag === "INPUT" && target.form === el.cutForm && typing) return; // the form submits
      event.preventDefault();
      cut();
    } else if (!typing && ["i", "o"].includes(event.key.toLowerCase())) {
      event.preventDefault();
      mark(event.key.toLowerCase() === "i" ? "in" : "out");
    }
  });

  setInterval(() => {
    for (const card of state.cards.values()) tickCard(card);
    if (state.hls && el.player.paused) showPosition();
  }, 1000);

  if (state.key) connect(state.key);
  else el.key.focus();
})();
