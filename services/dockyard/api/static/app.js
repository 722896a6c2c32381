// The Dockyard dashboard: plain JS over the HTTP API (same origin, session cookie).
// Everything shown comes from the API and is set as text, never parsed as HTML.
"use strict";

const PHASES = ["build", "predeploy", "release", "start", "postdeploy", "switch",
                "after_switch", "retire", "on_failure"];
const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
let streams = [];   // EventSources of the page shown; closed when it changes
let timers = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) throw new Unauthorized(data && data.error ? data.error : "log in");
  if (!response.ok) throw new Error(data && data.error ? data.error : `HTTP ${response.status}`);
  return data;
}

function badge(state) {
  return el("span", { class: `badge ${state || "none"}` }, state || "—");
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "";
}

function notice(text) {
  const box = document.getElementById("notice");
  if (box) box.textContent = text;
}

function cleanup() {
  streams.forEach((s) => s.close());
  timers.forEach((t) => clearInterval(t));
  streams = [];
  timers = [];
}

function setCrumbs(...parts) {
  crumbs.replaceChildren(...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

// ------------------------------------------------------------------ login

function showLogin() {
  cleanup();
  document.getElementById("logout").hidden = true;
  setCrumbs();
  const form = document.getElementById("login-form").content.cloneNode(true);
  main.replaceChildren(form);
  document.getElementById("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    error.textContent = "";
    try {
      await api("POST", "/session", { token: document.getElementById("token").value });
      route();
    } catch (exc) {
      error.textContent = exc.message;
    }
  });
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("DELETE", "/session");
  showLogin();
});

// ------------------------------------------------------------------ apps

async function showApps() {
  setCrumbs();
  const render = async () => {
    const apps = await api("GET", "/apps");
    const rows = apps.map((a) => el("tr", { "data-app": a.name },
      el("td", {}, el("a", { href: `#/apps/${a.name}` }, a.name)),
      el("td", {}, a.live_release ? `v${a.live_release}` : "—"),
      el("td", { class: "health" }, badge(a.health), a.running ? ` ${a.running} running` : ""),
      el("td", { class: "status" }, badge(a.status))));
    main.replaceChildren(el("h1", {}, "Apps"),
      apps.length ? el("table", { id: "apps" },
        el("tr", {}, el("th", {}, "app"), el("th", {}, "live release"), el("th", {}, "health"),
           el("th", {}, "latest deployment")), rows)
        : el("p", { class: "muted" }, "No apps yet: `dockyard deploy APP DIR`, or POST an archive "
                                        + "to /apps/{app}/deployments."));
  };
  await render();
  timers.push(setInterval(() => render().catch(handle), 3000));
}

// ------------------------------------------------------------------ one app

async function showApp(name) {
  setCrumbs(el("a", { href: `#/apps/${name}` }, name));
  const history = el("tbody", { id: "history" });
  const summary = el("div", { id: "summary" });
  const rollout = el("section", { id: "rollout", hidden: true });
  const operate = async (label, method, path, body, said = () => "asked for") => {
    notice("");
    try {
      notice(`${label}: ${said(await api(method, path, body))}`);
      await render();
    } catch (exc) {
      if (exc instanceof Unauthorized) throw exc;
      notice(`${label}: ${exc.message}`);
    }
  };
  main.replaceChildren(
    el("h1", {}, name), summary,
    el("div", { class: "actions" },
      el("button", { id: "rollback", type: "button",
                     title: "A new release of the release before the live one (its build and "
                            + "config); databases are not rolled back",
                     onclick: () => operate("rollback", "POST", `/apps/${name}/rollback`, {}) },
         "Roll back"),
      el("button", { id: "maintenance-on", type: "button",
                     onclick: () => operate("maintenance", "POST", `/apps/${name}/maintenance`,
                                            { enabled: true }, turned) }, "Maintenance on"),
      el("button", { id: "maintenance-off", type: "button",
                     onclick: () => operate("maintenance", "POST", `/apps/${name}/maintenance`,
                                            { enabled: false }, turned) }, "Maintenance off")),
    el("p", { id: "notice", role: "status" }),
    rollout,
    el("h2", {}, "Deployments"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "deployment"),
                                       el("th", {}, "release"), el("th", {}, "status"),
                                       el("th", {}, "reason"), el("th", {}, "created"))),
       history));
  const turned = (m) => (m.enabled ? "on: the host answers 503 with a maintenance page"
                                    : "off: the host routes to the live release");
  const render = async () => {
    const [app, deployments, maintenance, progress] = await Promise.all([
      api("GET", `/apps/${name}`), api("GET", `/apps/${name}/deployments?limit=50`),
      api("GET", `/apps/${name}/maintenance`), api("GET", `/apps/${name}/rollout`)]);
    rolloutView(rollout, progress, operate);
    summary.replaceChildren(el("p", {},
      "live release ", el("strong", { id: "live" }, app.live_release ? `v${app.live_release}` : "none"),
      " · health ", badge(app.health), ` · ${app.instances.length} instance(s) running`,
      " · formation ", el("strong", { id: "formation" }, app.formation
        ? Object.entries(app.formation).map(([p, n]) => `${p}=${n}`).join(" ") : "the plan's"),
      " · maintenance ", el("strong", { id: "maintenance" }, maintenance.enabled ? "on" : "off")));
    history.replaceChildren(...deployments.map((d) => el("tr", { "data-deployment": d.id },
      el("td", {}, el("a", { href: `#/deployments/${d.id}`, class: "mono" }, d.id.slice(0, 12))),
      el("td", {}, d.release ? `v${d.release}` : ""),
      el("td", {}, badge(d.status)),
      el("td", {}, d.reason + (d.exit_code !== null ? ` (exit code ${d.exit_code})` : "")),
      el("td", {}, when(d.created_at)))));
  };
  await render();
  // A rollout's figures change without events (the router records them): looked at again.
  timers.push(setInterval(() => render().catch(handle), 2000));
  const events = new EventSource(`/apps/${name}/events/stream`);
  let pending = null;
  events.onmessage = () => {   // a burst of replayed events refreshes once
    clearTimeout(pending);
    pending = setTimeout(() => render().catch(handle), 150);
  };
  streams.push(events);
}

// A canary step or the watch window in progress: where it is, both releases' figures as the
// router last judged them, and the operator's promote and abort.
function rolloutView(section, r, operate) {
  if (!r.in_progress) {
    section.hidden = true;
    section.replaceChildren();
    return;
  }
  const left = r.until ? Math.max(0, Math.round((Date.parse(r.until) - Date.now()) / 1000)) : null;
  const stage = r.stage === "canary"
    ? `canary of v${r.release}: step ${r.step}/${r.steps}, ${r.percent}% of requests`
    : `watching v${r.release}: v${r.previous_release} warm to switch back to`;
  const row = (label, f) => el("tr", {},
    el("td", {}, label),
    el("td", {}, f ? String(f.requests) : "–"),
    el("td", {}, f ? `${f.errors} (${(f.error_rate * 100).toFixed(1)}%)` : "–"),
    el("td", {}, f && f.p95 !== null ? `${Math.round(f.p95 * 1000)} ms` : "–"));
  const order = (action) => operate(`rollout ${action}`, "POST", `/apps/${r.app}/rollout`,
                                    { action }, () => "ordered; the router acts within a second");
  section.hidden = false;
  section.replaceChildren(
    el("h2", {}, "Rollout"),
    el("p", {}, el("strong", { id: "rollout-stage" }, stage),
       left === null ? "" : ` · ${left}s left`),
    el("table", { id: "rollout-figures" },
       el("thead", {}, el("tr", {}, el("th", {}, "release"), el("th", {}, "requests"),
                          el("th", {}, "errors"), el("th", {}, "p95"))),
       el("tbody", {}, row(`v${r.release} (new)`, r.new),
          row(`v${r.previous_release} (old)`, r.old))),
    el("div", { class: "actions" },
       el("button", { id: "rollout-promote", type: "button", onclick: () => order("promote") },
          "Promote now"),
       el("button", { id: "rollout-abort", type: "button", onclick: () => order("abort") },
          "Abort: back to the old release")));
}

// ------------------------------------------------------------------ one deployment

function timelineView(steps) {
  return el("ol", { class: "timeline", id: "timeline" }, steps.map((s) => el("li", {
    "data-phase": s.phase, "data-state": s.state, class: s.state,
    title: s.reason || "",
  }, el("span", { class: "name" }, s.phase.replace("_", "-")), s.state,
     s.commands ? el("div", { class: "muted" }, `${s.commands} command(s)`) : null,
     s.exit_code !== null ? el("div", {}, `exit code ${s.exit_code}`) : null)));
}

function failureView(d) {
  if (d.finished_at === null || d.status === "succeeded") return el("div", { id: "failure", hidden: true });
  return el("div", { id: "failure", class: "card" },
    el("h2", {}, "Failed: ", el("span", { class: d.status }, d.status)),
    el("p", { id: "reason" }, d.reason),
    d.exit_code !== null ? el("p", { id: "exit-code" }, `exit code ${d.exit_code}`) : null,
    d.tail.length ? el("pre", { id: "tail" }, d.tail.join("\n")) : null);
}

async function showDeployment(id) {
  const first = await api("GET", `/deployments/${id}`);
  const app = first.app;
  setCrumbs(el("a", { href: `#/apps/${app}` }, app), el("span", { class: "mono" }, id.slice(0, 12)));
  const head = el("div", {});
  const steps = el("div", {});
  const failure = el("div", {});
  const log = el("pre", { id: "log" });
  const cancel = el("button", { id: "cancel", type: "button", class: "danger", onclick: async () => {
    notice("");
    try {
      await api("POST", `/deployments/${id}/cancel`);
      notice("cancel requested");
    } catch (exc) {
      notice(`cancel: ${exc.message}`);
    }
  } }, "Cancel");
  main.replaceChildren(el("h1", {}, `Deployment of ${app}`), head,
                       el("div", { class: "actions" }, cancel), el("p", { id: "notice" }),
                       steps, failure, el("h2", {}, "Log"), log);
  const render = (d) => {
    head.replaceChildren(el("p", {}, "status ", el("span", { id: "status" }, badge(d.status)),
      d.release ? ` · release v${d.release}` : "", ` · ${d.kind} · created ${when(d.created_at)}`));
    steps.replaceChildren(timelineView(d.timeline));
    failure.replaceChildren(failureView(d));
    cancel.hidden = d.finished_at !== null;
  };
  render(first);
  let pending = null;
  const refresh = async () => {   // a burst of events refreshes once
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try { render(await api("GET", `/deployments/${id}`)); } catch (exc) { handle(exc); }
    }, 100);
  };

  const lines = new EventSource(`/deployments/${id}/logs`);
  lines.addEventListener("line", (event) => {
    const line = JSON.parse(event.data);
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(el("span", { class: line.stream }, line.text + "\n"));
    if (stick) log.scrollTop = log.scrollHeight;
  });
  lines.addEventListener("end", () => { lines.close(); refresh().catch(handle); });
  streams.push(lines);

  const events = new EventSource(`/apps/${app}/events/stream`);
  events.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.deploymentid === id) refresh().catch(handle);
  };
  streams.push(events);
}

// ------------------------------------------------------------------ routing

function handle(exc) {
  if (exc instanceof Unauthorized) showLogin();
  else main.replaceChildren(el("p", { class: "error", role: "alert" }, exc.message));
}

async function route() {
  cleanup();
  document.getElementById("logout").hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "apps" && parts[1]) await showApp(parts[1]);
    else if (parts[0] === "deployments" && parts[1]) await showDeployment(parts[1]);
    else await showApps();
  } catch (exc) {
    handle(exc);
  }
}

window.addEventListener("hashchange", route);
route();
