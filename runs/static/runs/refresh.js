// A page showing work in flight (a run running, an action queued or running) asks
// to be reloaded with <meta name="console-refresh" content="seconds">; the server
// stops asking once nothing on the page is in flight. Whatever a person types,
// ticks or picks on the page stops the reloading: nothing they started is lost.
(function () {
  var asked = document.querySelector('meta[name="console-refresh"]');
  if (!asked) {
    return;
  }
  var seconds = Math.max(Number(asked.getAttribute("content")) || 5, 1);
  var timer = window.setTimeout(function () {
    window.location.reload();
  }, seconds * 1000);
  function hold() {
    window.clearTimeout(timer);
  }
  document.addEventListener("input", hold, true);
  document.addEventListener("change", hold, true);
})();
