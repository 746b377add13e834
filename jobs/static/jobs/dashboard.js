// Live job dashboard: polls the staff JSON endpoint and updates cells in place (no full reload).
// Every 2 s while a job on the page is pending/running, every 10 s otherwise; reloads the list once
// when a job newer than the page appears, so new jobs show up without anyone pressing F5.
(function () {
  "use strict";
  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.content : null;
  }
  // Translations come from the JavaScript catalog (/jsi18n/, loaded by templates/admin/base_site.html).
  var gettext = window.gettext || function (s) { return s; };
  var interpolate = window.interpolate || function (s, args) { return s.replace("%s", args[0]); };
  // Read at DOMContentLoaded: the admin loads this script in <head> before the <meta> tags it reads.
  var url = null;
  var baseline = 0;

  function jobIds() {
    var seen = {};
    document.querySelectorAll('[data-job][data-field="status"]').forEach(function (el) {
      seen[el.dataset.job] = true;
    });
    return Object.keys(seen);
  }
  function anyActive() {
    return !!document.querySelector('[data-field="status"][data-active="1"]');
  }
  function setText(id, field, text) {
    document.querySelectorAll('[data-job="' + id + '"][data-field="' + field + '"]').forEach(function (el) {
      if (el.textContent !== text) el.textContent = text;
    });
  }
  function apply(job) {
    var d = job.display;
    ["progress", "counts", "speed", "eta", "started", "elapsed", "heartbeat"].forEach(function (f) {
      setText(job.id, f, d[f]);
    });
    document.querySelectorAll('[data-job="' + job.id + '"][data-field="status"]').forEach(function (el) {
      el.textContent = d.status;
      el.className = "sb-badge sb-" + d.status_class;
      el.dataset.active = d.is_active ? "1" : "0";
    });
    document.querySelectorAll('[data-job="' + job.id + '"][data-field="bar"]').forEach(function (el) {
      var bar = el.querySelector(".sb-bar");
      if (bar) bar.style.width = (d.percent || 0) + "%";
      el.classList.toggle("sb-indeterminate", d.indeterminate);
    });
  }
  // A line under the page title saying whether the page is live, so staff know the figures move by themselves.
  function notice(text, failing) {
    var el = document.getElementById("sb-live");
    if (!el) {
      el = document.createElement("p");
      el.id = "sb-live";
      el.className = "sb-live";
      var anchor = document.getElementById("content") || document.body;
      anchor.insertBefore(el, anchor.firstChild ? anchor.firstChild.nextSibling : null);
    }
    el.textContent = text;
    el.classList.toggle("sb-live-failing", !!failing);
  }
  function poll() {
    var ids = jobIds();
    var q = "?limit=500" + (ids.length ? "&ids=" + ids.join(",") : "&limit=1");
    fetch(url + q, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        if (ids.length) data.jobs.forEach(apply);
        notice(interpolate(gettext("Live: this page refreshes itself every %s seconds."), [anyActive() ? 2 : 10]));
        if (document.getElementById("changelist") && data.latest_id && data.latest_id > baseline) {
          window.location.reload();
          return;
        }
        schedule();
      })
      .catch(function () {
        notice(gettext("Live updates paused: the server did not answer. Retrying in 10 seconds…"), true);
        schedule(10000);
      });
  }
  function schedule(delay) {
    window.setTimeout(poll, delay || (anyActive() ? 2000 : 10000));
  }
  document.addEventListener("DOMContentLoaded", function () {
    url = meta("sb-jobs-poll");
    if (!url) return;
    baseline = Number(meta("sb-jobs-latest") || 0);
    document.documentElement.dataset.sbPolling = "1";
    schedule(2000);
  });
})();
