// The replay page's player (runs/replay): it rebuilds each full snapshot of an rrweb
// recording (rrweb's event format; recording.js sets window.FLARE_REPLAY to
// {events, chapters}) as static HTML in a frame that runs no scripts, steps through
// them in recorded time, and lists the chapters as jump links.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr']);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  function html(n) {
    switch (n.type) {
      case 0: return (n.childNodes || []).map(html).join('');
      case 1: return '<!doctype ' + esc(n.name || 'html') + '>';
      case 3: return n.isStyle ? String(n.textContent).replace(/<\/style/gi, '<\\/style') : esc(n.textContent);
      case 5: return '';
      case 2: {
        const a = n.attributes || {};
        const tag = String(n.tagName).toLowerCase().replace(/[^a-z0-9-]/g, '');
        if (!tag || tag === 'script') return '';
        if (tag === 'link' && a._cssText !== undefined) return '<style>' + String(a._cssText).replace(/<\/style/gi, '<\\/style') + '</style>';
        let attrs = '';
        for (const k of Object.keys(a)) {
          if (k.startsWith('_') || /^on/i.test(k) || !/^[a-zA-Z_:][-a-zA-Z0-9_:.]*$/.test(k)) continue;
          const v = a[k] === true ? '' : String(a[k]);
          if (/^(href|src|action|formaction)$/i.test(k) && /^\s*javascript:/i.test(v)) continue;
          attrs += ' ' + k + '="' + esc(v) + '"';
        }
        if (VOID.has(tag)) return '<' + tag + attrs + '>';
        return '<' + tag + attrs + '>' + (n.childNodes || []).map(html).join('') + '</' + tag + '>';
      }
    }
    return '';
  }

  let frames = [];
  let chapters = [];
  let current = -1;
  let timer = null;
  const stage = $('stage');
  // data-rendered says which frame the stage shows once it has loaded (for tests, and
  // for anyone scripting the page).
  stage.addEventListener('load', () => { if (current >= 0) document.body.dataset.rendered = String(current + 1); });

  function show(i) {
    if (!frames.length) return;
    i = Math.max(0, Math.min(frames.length - 1, i));
    current = i;
    const f = frames[i];
    stage.width = f.width;
    stage.height = f.height;
    let doc = html(f.node);
    if (f.href) doc = doc.replace(/<head(\s[^>]*)?>/i, (m) => m + '<base href="' + esc(f.href) + '">');
    stage.srcdoc = doc;
    $('seek').value = String(i);
    const t = (f.timestamp - frames[0].timestamp) / 1000;
    $('clock').textContent = t.toFixed(1) + ' s';
    $('status').textContent = 'frame ' + (i + 1) + ' / ' + frames.length;
    document.body.dataset.frame = String(i + 1);
    const rel = f.timestamp - frames[0].timestamp;
    for (const a of document.querySelectorAll('#chapters a')) {
      a.classList.toggle('current', rel >= Number(a.dataset.start) && rel <= Number(a.dataset.end));
    }
  }

  function stop() { clearTimeout(timer); timer = null; $('play').textContent = '▶ Play'; }
  function play() {
    if (current >= frames.length - 1) show(0);
    $('play').textContent = '❚❚ Pause';
    const step = () => {
      if (current >= frames.length - 1) { stop(); return; }
      const wait = Math.min(2000, Math.max(100, frames[current + 1].timestamp - frames[current].timestamp));
      timer = setTimeout(() => { show(current + 1); step(); }, wait);
    };
    step();
  }

  $('play').onclick = () => (timer ? stop() : play());
  $('prev').onclick = () => { stop(); show(current - 1); };
  $('next').onclick = () => { stop(); show(current + 1); };
  $('seek').oninput = (e) => { stop(); show(Number(e.target.value)); };

  const load = () => {
    const rec = window.FLARE_REPLAY;
    if (!rec || !Array.isArray(rec.events)) { $('status').textContent = 'cannot load the recording'; return; }
    const events = rec.events;
    const chs = rec.chapters;
    let size = { width: 1280, height: 800, href: '' };
    for (const e of events) {
      if (e.type === 4) size = { width: e.data.width, height: e.data.height, href: e.data.href };
      if (e.type === 2) frames.push({ node: e.data.node, timestamp: e.timestamp, width: size.width, height: size.height, href: size.href });
    }
    chapters = chs || [];
    const nav = $('chapters');
    for (const c of chapters) {
      const a = document.createElement('a');
      a.href = '#';
      a.textContent = c.name + (c.status ? ' — ' + c.status : '');
      a.className = c.status || '';
      a.dataset.start = String(c.startMs || 0);
      a.dataset.end = String(c.endMs || 0);
      a.onclick = (ev) => {
        ev.preventDefault();
        stop();
        const t0 = frames.length ? frames[0].timestamp : 0;
        const i = frames.findIndex((f) => f.timestamp - t0 >= (c.startMs || 0));
        show(i < 0 ? frames.length - 1 : i);
      };
      nav.appendChild(a);
    }
    document.body.dataset.frames = String(frames.length);
    $('seek').max = String(Math.max(0, frames.length - 1));
    if (!frames.length) { $('status').textContent = 'no frames recorded'; return; }
    show(0);
  };
  load();
})();
