// Tells the console the browser's time zone (a cookie the server checks against its
// zone database), so instants are shown in the reader's zone until they choose one.
// If this page shows instants in another zone, and nobody chose one, it is loaded
// again once, in the browser's zone (only when it was a GET: a form is not sent twice).
(function () {
  "use strict";
  var script = document.currentScript;
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  if (!script || !zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) {
    return;
  }
  var name = script.dataset.cookie;
  function stored() {
    var found = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return found ? found[1] : null;
  }
  if (stored() === zone) {
    return;
  }
  document.cookie = name + "=" + zone + "; path=/; max-age=31536000; samesite=lax" +
    (location.protocol === "https:" ? "; secure" : "");
  if (stored() === zone && script.dataset.source !== "chosen" &&
      script.dataset.zone !== zone && script.dataset.get === "yes" &&
      document.querySelector("time[datetime]")) {
    location.reload();
  }
})();
