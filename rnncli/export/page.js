// rnncli's sampling page: runs a character language model exported by `rnn export --html` in the
// browser. The model (settings, vocabulary, chosen units) is the JSON block #rnncli-model, its
// weights one base64 block of little-endian float32 (#rnncli-weights), in rnncli's own layout:
// gate row blocks stacked as config.GATES orders them (rnn: a; lstm: i f g o; gru: r z n).
// Every piece of model text reaches the page through textContent, never as markup.
(function () {
  "use strict";

  var errorBox = document.getElementById("rnncli-errors");
  function report(message) {
    errorBox.hidden = false;
    errorBox.textContent += message + "\n";
  }
  window.addEventListener("error", function (e) {
    report("error: " + (e.message || e.type) + (e.lineno ? " (line " + e.lineno + ")" : ""));
  });
  window.addEventListener("unhandledrejection", function (e) { report("error: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) {
    report("blocked by the page's security policy: " + e.violatedDirective);
  });

  var spec = JSON.parse(document.getElementById("rnncli-model").textContent);
  var cfg = spec.config;
  var vocab = spec.vocab;
  var V = vocab.length, H = cfg.hidden_size, L = cfg.num_layers;
  var G = { rnn: 1, lstm: 4, gru: 3 }[cfg.cell];
  var GH = G * H;

  // ---------------------------------------------------------------- weights

  function decodeBase64(text) {
    var binary = atob(text);
    var n = binary.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }
  var blob = new Float32Array(decodeBase64(document.getElementById("rnncli-weights").textContent.trim()));
  function tensor(name) {
    var t = spec.tensors[name];
    var size = t.shape.reduce(function (a, b) { return a * b; }, 1);
    return blob.subarray(t.offset, t.offset + size);
  }
  var table0 = tensor("table0"); // (V, G·H): W_xh x + b of layer 0 for each character
  var layers = [];
  for (var k = 0; k < L; k++) {
    layers.push({
      W_xh: k > 0 ? tensor("l" + k + ".W_xh") : null, // (G·H, H)
      b: k > 0 ? tensor("l" + k + ".b") : null,
      W_hh: tensor("l" + k + ".W_hh"), // (G·H, H)
      b_hn: cfg.cell === "gru" ? tensor("l" + k + ".b_hn") : null
    });
  }
  var W_hy = tensor("W_hy"), b_y = tensor("b_y"); // (V, H), (V,)

  // ---------------------------------------------------------------- the model, one step at a time

  var ACT = {
    tanh: Math.tanh,
    relu: function (x) { return x > 0 ? x : 0; },
    sigmoid: function (x) { return 1 / (1 + Math.exp(-x)); }
  };
  function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }

  function newState() {
    var s = { h: [], c: [] };
    for (var k = 0; k < L; k++) {
      s.h.push(new Float64Array(H));
      s.c.push(new Float64Array(H));
    }
    return s;
  }
  var pre = new Float64Array(GH), rec = new Float64Array(GH), logits = new Float64Array(V);

  // out[r] = W[r, :] · x (+ bias[r]) for the rows of W (rows, cols), row-major
  function matvec(W, x, rows, cols, bias, out) {
    for (var r = 0; r < rows; r++) {
      var sum = bias ? bias[r] : 0, base = r * cols;
      for (var j = 0; j < cols; j++) sum += W[base + j] * x[j];
      out[r] = sum;
    }
  }

  // Feed one character id; the state advances in place and `logits` holds the next scores.
  function step(state, id) {
    var below = null;
    for (var k = 0; k < L; k++) {
      var lay = layers[k], h = state.h[k], c = state.c[k], j;
      if (k === 0) {
        for (j = 0; j < GH; j++) pre[j] = table0[id * GH + j];
      } else {
        matvec(lay.W_xh, below, GH, H, lay.b, pre);
      }
      matvec(lay.W_hh, h, GH, H, null, rec);
      if (cfg.cell === "rnn") {
        var act = ACT[cfg.activation];
        for (j = 0; j < H; j++) h[j] = act(pre[j] + rec[j]);
      } else if (cfg.cell === "lstm") {
        for (j = 0; j < H; j++) {
          var ig = sigmoid(pre[j] + rec[j]);
          var fg = sigmoid(pre[H + j] + rec[H + j]);
          var gg = Math.tanh(pre[2 * H + j] + rec[2 * H + j]);
          var og = sigmoid(pre[3 * H + j] + rec[3 * H + j]);
          c[j] = fg * c[j] + ig * gg;
          h[j] = og * Math.tanh(c[j]);
        }
      } else { // gru: the reset gate scales W_hn h + b_hn after the product
        for (j = 0; j < H; j++) {
          var rg = sigmoid(pre[j] + rec[j]);
          var zg = sigmoid(pre[H + j] + rec[H + j]);
          var ng = Math.tanh(pre[2 * H + j] + rg * (rec[2 * H + j] + lay.b_hn[j]));
          h[j] = (1 - zg) * ng + zg * h[j];
        }
      }
      below = h;
    }
    matvec(W_hy, below, V, H, b_y, logits);
  }

  function softmax(scores, inverseTemperature) {
    var max = -Infinity, i, p = new Float64Array(scores.length), total = 0;
    for (i = 0; i < scores.length; i++) max = Math.max(max, scores[i]);
    for (i = 0; i < scores.length; i++) {
      p[i] = scores[i] === -Infinity ? 0 : Math.exp((scores[i] - max) * inverseTemperature);
      total += p[i];
    }
    for (i = 0; i < p.length; i++) p[i] /= total;
    return p;
  }

  // A seeded generator of uniforms in [0, 1): xorshift32 on a state mixed from the seed.
  function makeRandom(seed) {
    var x = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    x = (x ^ (x >>> 16)) >>> 0;
    if (x === 0) x = 0x6d2b79f5;
    return function () {
      x ^= x << 13; x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5; x >>>= 0;
      return x / 4294967296;
    };
  }

  // The next character from `logits`: greedy at temperature 0, else drawn among the topK
  // likeliest (0 = all) at that temperature.
  function draw(temperature, topK, random) {
    var i;
    if (!(temperature > 0)) {
      var best = 0;
      for (i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
      return best;
    }
    var scores = Float64Array.from(logits);
    if (topK > 0 && topK < V) {
      var kth = Array.prototype.slice.call(scores).sort(function (a, b) { return b - a; })[topK - 1];
      var kept = 0;
      for (i = 0; i < V; i++) {
        if (scores[i] >= kth && kept < topK) kept++;
        else scores[i] = -Infinity;
      }
    }
    var p = softmax(scores, 1 / temperature), u = random(), acc = 0, last = 0;
    for (i = 0; i < V; i++) {
      if (p[i] > 0) {
        acc += p[i];
        last = i;
        if (u < acc) return i;
      }
    }
    return last;
  }

  var index = new Map();
  vocab.forEach(function (ch, i) { index.set(ch, i); });
  function split(text) { return Array.from(text); } // by code point, as Python counts characters

  // The probabilities of the next character after reading `prefix` from a zero state
  // (temperature 1): the page's numbers, for comparing with rnncli.
  window.rnncliProbs = function (prefix) {
    var state = newState(), chars = split(prefix);
    if (!chars.length) chars = [vocab[spec.start]];
    chars.forEach(function (ch) {
      if (!index.has(ch)) throw new Error("a character the model does not know: U+" + ch.codePointAt(0).toString(16));
      step(state, index.get(ch));
    });
    return Array.from(softmax(logits, 1));
  };

  // ---------------------------------------------------------------- the page

  var el = function (id) { return document.getElementById(id); };
  var units = spec.units;
  var out = el("out"), status = el("status"), pick = el("picked");
  var running = null;

  function describe() {
    var text = cfg.cell.toUpperCase() + ", " + L + " layer" + (L > 1 ? "s" : "") + " of " + H + " units, " +
      V + " characters";
    if (spec.best_bits !== null) text += "; validation " + spec.best_bits.toFixed(3) + " bits/char";
    el("model").textContent = text;
    var legend = el("legend");
    units.forEach(function (u, i) {
      var row = document.createElement("li");
      var key = document.createElement("span");
      key.className = "key";
      key.textContent = String(i + 1);
      row.appendChild(key);
      row.appendChild(document.createTextNode(u.label + " \u2014 " + u.why));
      row.tabIndex = 0;
      row.title = "show or hide this unit's strip";
      var toggle = function () { row.classList.toggle("off", out.classList.toggle("hide-u" + i)); };
      row.addEventListener("click", toggle);
      row.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
      legend.appendChild(row);
    });
  }

  function colour(v, scale) {
    var t = Math.max(-1, Math.min(1, v / (scale > 0 ? scale : 1)));
    var fade = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? "rgb(255," + fade + "," + fade + ")" : "rgb(" + fade + "," + fade + ",255)";
  }

  function unitValues(state) {
    return units.map(function (u) { return (u.kind === "c" ? state.c : state.h)[u.layer][u.index]; });
  }

  var CHUNK = 64;
  var SHOWN = { "\n": "\u21b5", " ": "\u00a0", "\t": "\u21e5" };
  function cellFor(ch, values, primed) {
    var cell = document.createElement("span");
    cell.className = primed ? "ch prime" : "ch";
    var glyph = document.createElement("span");
    glyph.className = "glyph";
    glyph.textContent = SHOWN[ch] || ch;
    cell.appendChild(glyph);
    values.forEach(function (v, i) {
      var bar = document.createElement("span");
      bar.className = "bar u" + i;
      bar.style.backgroundColor = colour(v, units[i].scale);
      cell.appendChild(bar);
    });
    cell.title = values.map(function (v, i) { return (i + 1) + ": " + v.toFixed(3); }).join("  ");
    cell.addEventListener("click", function () {
      pick.textContent = JSON.stringify(ch) + "  " + cell.title;
    });
    return cell;
  }
  function place(fragment, ch, values, primed) {
    fragment.appendChild(cellFor(ch, values, primed));
    if (ch === "\n") {
      var br = document.createElement("span");
      br.className = "break";
      fragment.appendChild(br);
    }
  }

  function settings() {
    var t = parseFloat(el("temp").value), k = parseInt(el("topk").value, 10);
    var n = parseInt(el("length").value, 10), seed = parseInt(el("seed").value, 10);
    return {
      temperature: isFinite(t) && t > 0 ? t : 0,
      topK: isFinite(k) && k > 0 ? k : 0,
      length: isFinite(n) && n > 0 ? Math.min(n, 100000) : 500,
      seed: isFinite(seed) && seed >= 0 ? seed : 0
    };
  }

  function stop() {
    if (running) {
      clearTimeout(running.timer);
      running = null;
    }
    el("go").disabled = false;
    el("stop").disabled = true;
  }

  function generate(done) {
    stop();
    var s = settings(), random = makeRandom(s.seed), state = newState();
    var typed = split(el("prime").value);
    var known = typed.filter(function (ch) { return index.has(ch); });
    var dropped = typed.length - known.length;
    out.textContent = "";
    pick.textContent = "";
    var fragment = document.createDocumentFragment();
    var feed = known.length ? known : [vocab[spec.start]];
    feed.forEach(function (ch) {
      step(state, index.get(ch));
      if (known.length) place(fragment, ch, unitValues(state), true);
    });
    out.appendChild(fragment);
    var text = [], t0 = performance.now();
    var job = running = { timer: 0 };
    el("go").disabled = true;
    el("stop").disabled = false;
    var note = dropped ? "; " + dropped + " character(s) of the prime the model does not know were left out" : "";
    function chunk() {
      if (running !== job) return;
      // at most CHUNK characters or about 12 ms per turn, then the browser draws them
      var frame = document.createDocumentFragment(), until = performance.now() + 12, made = 0;
      while (text.length < s.length && made++ < CHUNK && performance.now() < until) {
        var id = draw(s.temperature, s.topK, random);
        text.push(vocab[id]);
        step(state, id);
        place(frame, vocab[id], unitValues(state), false);
      }
      out.appendChild(frame);
      var seconds = (performance.now() - t0) / 1000;
      status.textContent = text.length + " characters, " + Math.round(text.length / Math.max(seconds, 1e-3)) +
        " chars/s, seed " + s.seed + note;
      if (text.length < s.length) {
        job.timer = setTimeout(chunk, 0);
      } else {
        stop();
        if (done) done(text.join(""), seconds);
      }
    }
    chunk();
  }

  var whenDone = null; // the test hook's callback, given the finished text
  el("go").addEventListener("click", function () { generate(whenDone); });
  el("stop").addEventListener("click", stop);
  el("temp").addEventListener("input", function () { el("tempShown").textContent = el("temp").value; });
  el("reseed").addEventListener("click", function () {
    el("seed").value = String(Math.floor(Math.random() * 1000000));
  });
  describe();
  el("tempShown").textContent = el("temp").value;
  // from the start of navigation: reading the page, decoding the weights, building it
  window.rnncliReady = { loadMs: performance.now() };

  // ---------------------------------------------------------------- hooks for tests, by the URL's hash
  // #probs=TEXT    the next-character probabilities after TEXT, as JSON, into #rnncli-test
  // #prime=TEXT&seed=N&length=N&temp=T&topk=K&autostart=1   press Generate; the text as JSON
  // #bench=N       N characters generated without drawing them (dom=1: drawn); chars/s as JSON

  var hook = new URLSearchParams(location.hash.slice(1)), testOut = el("rnncli-test");
  function answer(value) {
    testOut.textContent = JSON.stringify(value);
    testOut.setAttribute("data-done", "1");
  }
  if (hook.has("probs")) {
    answer({ probs: window.rnncliProbs(hook.get("probs")), vocab: vocab });
  } else if (hook.has("bench")) {
    var n = Math.max(1, parseInt(hook.get("bench"), 10) || 1000), state = newState(), random = makeRandom(1);
    step(state, spec.start);
    var t0 = performance.now(), drawn = hook.get("dom") === "1", frame = document.createDocumentFragment();
    for (var i = 0; i < n; i++) {
      var id = draw(1, 0, random);
      step(state, id);
      if (drawn) { // with dom=1, each character's cell built and shown as generate() shows it
        place(frame, vocab[id], unitValues(state), false);
        if (i % CHUNK === CHUNK - 1) out.appendChild(frame);
      }
    }
    if (drawn) {
      out.appendChild(frame);
      void out.offsetHeight; // the layout of every cell, inside the timing
    }
    var seconds = (performance.now() - t0) / 1000;
    answer({ chars: n, seconds: seconds, chars_per_second: n / seconds, load_ms: window.rnncliReady.loadMs,
      dom: drawn });
  } else if (hook.get("autostart") === "1") {
    ["prime", "seed", "length", "temp", "topk"].forEach(function (name) {
      if (hook.has(name)) el(name).value = hook.get(name);
    });
    el("tempShown").textContent = el("temp").value;
    whenDone = function (text, seconds) {
      answer({ text: text, seconds: seconds, shown: out.querySelectorAll(".ch").length });
    };
    el("go").click();
  }
})();
