// The overview on the admin home refreshes itself: it asks GET /api/overview/ for the fragment again and swaps
// it in place (no page reload), every 2 s while a job runs and every 10 s otherwise, like the job dashboard.
(function () {
  "use strict";
  var root = null;
  var timer = null;

  function schedule(seconds) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, (seconds || 10) * 1000);
  }
  function poll() {
    if (document.hidden) { schedule(10); return; }
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        root.innerHTML = data.html;
        root.dataset.refresh = data.refresh_seconds;
        root.dataset.polls = String(Number(root.dataset.polls || 0) + 1);
        schedule(data.refresh_seconds);
      })
      .catch(function () { schedule(10); });  // logged out or a blip: try again later, keep what is shown
  }
  document.addEventListener("DOMContentLoaded", function () {
    root = document.getElementById("sb-overview");
    if (!root || !root.dataset.url) return;
    document.documentElement.dataset.sbOverviewPolling = "1";
    schedule(Number(root.dataset.refresh) || 10);
  });
})();
