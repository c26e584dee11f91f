
(function () {
  "use strict";
  var doc = document, root = doc.documentElement;
  var data = JSON.parse(doc.getElementById("asgitrace-data").textContent);
  var lanes = [].slice.call(doc.querySelectorAll(".lane"));
  var sections = [].slice.call(doc.querySelectorAll("section.request"));
  var missing = doc.getElementById("req-missing");
  var bar = doc.getElementById("selection");
  var box = doc.getElementById("seg-detail");
  var timeline = doc.getElementById("timeline-lanes");
  var tip = doc.createElement("div");
  var current = 0, activeSeg = null, activeRow = null;
  root.classList.add("js");
  if (!timeline) { root.setAttribute("data-ready", "true"); return; }
  tip.id = "tip"; tip.setAttribute("role", "tooltip"); tip.hidden = true;
  doc.body.appendChild(tip);

  function el(tag, cls, text) {
    var node = doc.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function info(n) { return data.requests[n - 1]; }

  function select(n, user) {
    if (!info(n)) { return; }
    current = n;
    lanes.forEach(function (lane) {
      var on = Number(lane.dataset.n) === n;
      lane.classList.toggle("selected", on);
      lane.setAttribute("aria-selected", on ? "true" : "false");
      lane.tabIndex = on ? 0 : -1;
      if (on && user) {
        lane.focus({preventScroll: true});
        lane.scrollIntoView({block: "nearest"});
      }
    });
    var shown = false;
    sections.forEach(function (section) {
      var on = Number(section.dataset.n) === n;
      section.hidden = !on;
      shown = shown || on;
    });
    if (missing) { missing.hidden = shown; }
    var r = info(n);
    bar.textContent = "";
    bar.appendChild(el("span", "pill accent", "Request " + n + " of " + data.requests.length));
    bar.appendChild(el("b", "", r.method + " " + r.path));
    bar.appendChild(el("span", "", "\u2192 " + (r.status === null ? "no response" : r.status) +
      " in " + r.duration + " \u00b7 " + r.outcome +
      (r.detail ? "" : " \u00b7 no details in this report")));
    var keys = el("span", "keys");
    keys.appendChild(el("kbd", "", "\u2191"));
    keys.appendChild(doc.createTextNode(" "));
    keys.appendChild(el("kbd", "", "\u2193"));
    keys.appendChild(doc.createTextNode(" other requests"));
    bar.appendChild(keys);
  }

  function describe(seg) {
    var lane = seg.closest(".lane"), n = Number(lane.dataset.n), r = info(n);
    return {
      n: n, state: seg.dataset.state, label: data.states[seg.dataset.state],
      when: seg.dataset.at + " \u2192 " + seg.dataset.end + " (" + seg.dataset.took + ")",
      what: seg.dataset.what, step: seg.dataset.step,
      request: "#" + n + " " + r.method + " " + r.path
    };
  }

  function showTip(seg, x, y) {
    var d = describe(seg);
    tip.textContent = "";
    tip.appendChild(el("div", "t-head", d.label + " \u00b7 " + d.when));
    tip.appendChild(el("div", "t-sub", d.request + " \u00b7 from its arrival"));
    if (d.what) {
      var step = d.step ? "Step " + d.step + " \u00b7 " : "";
      tip.appendChild(el("div", "t-what", step + d.what));
    }
    tip.hidden = false;
    moveTip(x, y);
  }
  function moveTip(x, y) {
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = Math.min(x + 14, window.innerWidth - w - 8);
    var top = y + 18 + h > window.innerHeight ? y - h - 12 : y + 18;
    tip.style.left = Math.max(left, 8) + "px";
    tip.style.top = Math.max(top, 8) + "px";
  }

  function pin(seg) {
    var d = describe(seg);
    if (activeSeg) { activeSeg.classList.remove("active"); }
    if (activeRow) { activeRow.classList.remove("hl"); activeRow = null; }
    activeSeg = seg; seg.classList.add("active");
    box.textContent = "";
    var head = el("b", "");
    head.appendChild(el("span", "swatch " + d.state));
    head.appendChild(doc.createTextNode(d.label));
    box.appendChild(head);
    box.appendChild(el("span", "", d.when + " from the arrival of " + d.request));
    if (d.what) { box.appendChild(el("span", "", d.what)); }
    if (d.step) {
      var row = doc.getElementById("req-" + d.n + "-step-" + d.step);
      if (row) {
        activeRow = row; row.classList.add("hl");
        var link = el("a", "", "Step " + d.step + " \u2193");
        link.href = "#" + row.id;
        link.addEventListener("click", function (ev) {
          ev.preventDefault(); row.scrollIntoView({block: "center", behavior: "smooth"});
        });
        box.appendChild(link);
      }
    }
  }

  timeline.addEventListener("click", function (ev) {
    var lane = ev.target.closest(".lane");
    if (!lane) { return; }
    select(Number(lane.dataset.n), true);
    var seg = ev.target.closest(".seg");
    if (seg) { pin(seg); }
  });
  timeline.addEventListener("mouseover", function (ev) {
    var seg = ev.target.closest(".seg");
    if (seg) { showTip(seg, ev.clientX, ev.clientY); }
  });
  timeline.addEventListener("mousemove", function (ev) {
    if (!tip.hidden) { moveTip(ev.clientX, ev.clientY); }
  });
  timeline.addEventListener("mouseout", function (ev) {
    var seg = ev.target.closest(".seg");
    if (seg && !seg.contains(ev.relatedTarget)) { tip.hidden = true; }
  });
  timeline.addEventListener("keydown", function (ev) {
    var total = data.requests.length, next = current;
    if (ev.key === "ArrowDown" || ev.key === "j") { next = Math.min(current + 1, total); }
    else if (ev.key === "ArrowUp" || ev.key === "k") { next = Math.max(current - 1, 1); }
    else if (ev.key === "Home") { next = 1; }
    else if (ev.key === "End") { next = total; }
    else { return; }
    ev.preventDefault();
    select(next, true);
  });
  window.addEventListener("hashchange", function () { fromHash(); });

  function fromHash() {
    var m = /^#req-(\d+)/.exec(location.hash), n = m ? Number(m[1]) : 1;
    select(info(n) ? n : 1, false);
  }
  fromHash();
  root.setAttribute("data-ready", "true");
})();
