// A visible count under every text box with a length limit: the browser cuts a
// pasted note at the limit without a word, so say how much room is left.
document.querySelectorAll("textarea[maxlength]").forEach(function (box) {
  var limit = Number(box.getAttribute("maxlength"));
  var counter = document.createElement("p");
  counter.className = "counter";
  counter.setAttribute("aria-live", "polite");
  box.insertAdjacentElement("afterend", counter);
  function update() {
    var used = box.value.length;
    counter.textContent = used + " of " + limit + " characters" +
      (used >= limit ? ": the limit — anything longer was cut" : "");
    counter.classList.toggle("full", used >= limit);
  }
  box.addEventListener("input", update);
  update();
});
