// kumo studio: live updates over server-sent events, the create form's
// live name check, and small form helpers. No framework, no build step.
(function () {
  'use strict';
  var main = document.getElementById('main');
  var liveURL = main && main.getAttribute('data-live');
  var maxLog = 256 * 1024;

  if (liveURL && window.EventSource) {
    var es = new EventSource(liveURL);
    es.addEventListener('update', function (e) {
      var region = document.getElementById('live');
      if (!region) { return; }
      // Keep keyboard focus on the same control across the update.
      var active = document.activeElement;
      var again = null;
      if (active && region.contains(active)) {
        if (active.id) { again = '#' + CSS.escape(active.id); }
        else if (active.getAttribute('href')) { again = 'a[href="' + CSS.escape(active.getAttribute('href')) + '"]'; }
      }
      region.innerHTML = e.data;
      if (again) {
        var el = region.querySelector(again);
        if (el) { el.focus(); }
      }
    });
    es.addEventListener('log', function (e) {
      var pre = document.getElementById('log');
      if (!pre) { return; }
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      var text = pre.textContent + e.data;
      if (text.length > maxLog) { text = text.slice(text.length - maxLog); }
      pre.textContent = text;
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
    });
    es.addEventListener('gone', function (e) {
      es.close();
      var region = document.getElementById('live');
      if (region) {
        var p = document.createElement('p');
        p.className = 'note';
        p.setAttribute('role', 'status');
        p.textContent = 'This is gone: ' + e.data;
        region.replaceChildren(p);
      }
    });
    es.addEventListener('signedout', function () { es.close(); window.location.assign('/studio/signin'); });
    window.addEventListener('pagehide', function () { es.close(); });
  }

  // The create form's name: the rule is checked as one types, then the
  // server says whether the name is free.
  var name = document.getElementById('name');
  var nameErr = document.getElementById('err-name');
  if (name && nameErr && name.getAttribute('data-pattern')) {
    var rule = new RegExp(name.getAttribute('data-pattern'));
    var timer = null;
    var seq = 0;
    var show = function (ok, msg) {
      nameErr.textContent = ok ? '' : msg;
      nameErr.className = ok ? 'ok' : 'error';
      if (ok && msg) { nameErr.textContent = msg; }
      if (ok) { name.removeAttribute('aria-invalid'); } else { name.setAttribute('aria-invalid', 'true'); }
    };
    name.addEventListener('input', function () {
      var v = name.value;
      clearTimeout(timer);
      if (!rule.test(v)) {
        show(false, 'The name must be 2 to 16 letters, digits and hyphens (-), starting with a letter.');
        return;
      }
      show(true, '');
      var mine = ++seq;
      timer = setTimeout(function () {
        fetch('/studio/computes/check-name?name=' + encodeURIComponent(v), { credentials: 'same-origin' })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (j) { if (j && mine === seq) { show(j.ok, j.message); } })
          .catch(function () {});
      }, 200);
    });
  }

  // The size list shows the sizes of the chosen virtual machine type.
  var size = document.getElementById('vmSize');
  var types = document.querySelectorAll('input[name=vmType]');
  var filterSizes = function () {
    if (!size) { return; }
    var gpu = false;
    types.forEach(function (t) { if (t.checked) { gpu = t.value === 'GPU'; } });
    var first = null;
    Array.prototype.forEach.call(size.options, function (o) {
      var match = (o.getAttribute('data-gpu') === '1') === gpu;
      o.hidden = !match;
      o.disabled = !match;
      if (match && !first) { first = o; }
    });
    var sel = size.options[size.selectedIndex];
    if ((!sel || sel.disabled) && first) { first.selected = true; }
  };
  types.forEach(function (t) { t.addEventListener('change', filterSizes); });
  filterSizes();

  // The SSH fields are used only when SSH is enabled.
  var ssh = document.getElementById('ssh');
  var sshFields = document.getElementById('ssh-fields');
  var toggleSSH = function () {
    if (!ssh || !sshFields) { return; }
    sshFields.querySelectorAll('input,textarea').forEach(function (el) { el.disabled = !ssh.checked; });
  };
  if (ssh) { ssh.addEventListener('change', toggleSSH); toggleSSH(); }
}());
